//! What the worker drives: an [`Engine`] (the pipeline, or anything that generates like it) made
//! by an [`EngineLoader`], and an optional [`VramProbe`] for peak memory.

use crate::model::loader::{self, LoadOptions, ModelSpec};
use crate::model::pipeline::{Generated, ModelInfo, ZImagePipeline};
use crate::model::weights::ProgressFn;
use crate::model::{GenerationRequest, Progress, Result};

/// A loaded text-to-image model.
pub trait Engine {
    fn info(&self) -> &ModelInfo;
    fn generate(&self, request: &GenerationRequest, progress: &mut dyn Progress) -> Result<Generated>;
}

impl Engine for ZImagePipeline {
    fn info(&self) -> &ModelInfo {
        ZImagePipeline::info(self)
    }

    fn generate(&self, request: &GenerationRequest, progress: &mut dyn Progress) -> Result<Generated> {
        ZImagePipeline::generate(self, request, progress)
    }
}

/// Loads engines on the worker thread.
pub trait EngineLoader: Send {
    fn load(
        &mut self,
        spec: &ModelSpec,
        options: &LoadOptions,
        progress: ProgressFn,
    ) -> Result<Box<dyn Engine>>;
}

/// The real loader: [`loader::load`].
pub struct PipelineLoader;

impl EngineLoader for PipelineLoader {
    fn load(
        &mut self,
        spec: &ModelSpec,
        options: &LoadOptions,
        progress: ProgressFn,
    ) -> Result<Box<dyn Engine>> {
        Ok(Box::new(loader::load(spec, options, Some(progress))?))
    }
}

/// Reads the device memory in use (e.g. NVML for the worker's GPU). The worker samples it at
/// every stage and step and reports the maximum per job.
pub trait VramProbe: Send {
    fn used_bytes(&mut self) -> Option<u64>;
}
