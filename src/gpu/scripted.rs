//! Telemetry that replays memory readings fed by a test (or a demo), behind the same trait as
//! the real implementations.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{DeviceInfo, GpuSample, Telemetry, TelemetryError};

pub struct ScriptedTelemetry {
    info: DeviceInfo,
    template: GpuSample,
    queue: Arc<Mutex<VecDeque<u64>>>,
}

/// Queues readings for a [`ScriptedTelemetry`] that has moved into a sampler thread.
#[derive(Clone)]
pub struct ScriptFeeder {
    queue: Arc<Mutex<VecDeque<u64>>>,
}

impl ScriptFeeder {
    /// The next samples report these `memory_used` values, in order.
    pub fn push(&self, memory_used: impl IntoIterator<Item = u64>) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(memory_used);
    }
}

impl ScriptedTelemetry {
    /// Each sample is `template` with a fresh timestamp and the next queued `memory_used`; when
    /// the queue is empty the last value repeats (a steady device).
    pub fn new(info: DeviceInfo, template: GpuSample) -> Self {
        Self {
            info,
            template,
            queue: Arc::default(),
        }
    }

    pub fn feeder(&self) -> ScriptFeeder {
        ScriptFeeder {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl Telemetry for ScriptedTelemetry {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn sample(&mut self) -> Result<GpuSample, TelemetryError> {
        if let Some(next) = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
        {
            self.template.memory_used = next;
        }
        Ok(GpuSample {
            at: Instant::now(),
            ..self.template.clone()
        })
    }
}
