//! FlowMatch Euler, as diffusers' `ZImagePipeline` drives `FlowMatchEulerDiscreteScheduler`:
//! sigmas `linspace(1, 1/n, n)` (float32, torch's formula), shifted (static `shift` or, when the
//! config asks, resolution-dependent `mu`), terminal 0 appended; timesteps `sigma · 1000`.
//! One Euler step per model forward (diffusers ≥ 0.39: n steps = n forwards).
//! All schedule arithmetic is float32 in the same order as numpy/torch, so sigmas match bit for bit
//! up to libm differences; latents stay float32 whatever dtype the transformer runs in.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;

use super::{ModelError, Result};

/// `scheduler/scheduler_config.json`. Unknown keys (`_class_name`, ...) are ignored; options
/// diffusers supports but Z-Image never uses are rejected at load rather than silently ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "default_train_timesteps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_shift")]
    pub shift: f64,
    #[serde(default)]
    pub use_dynamic_shifting: bool,
    #[serde(default = "default_base_shift")]
    pub base_shift: f64,
    #[serde(default = "default_max_shift")]
    pub max_shift: f64,
    #[serde(default = "default_base_seq_len")]
    pub base_image_seq_len: usize,
    #[serde(default = "default_max_seq_len")]
    pub max_image_seq_len: usize,
    #[serde(default = "default_time_shift_type")]
    pub time_shift_type: String,
    #[serde(default)]
    pub invert_sigmas: bool,
    #[serde(default)]
    pub shift_terminal: Option<f64>,
    #[serde(default)]
    pub use_karras_sigmas: bool,
    #[serde(default)]
    pub use_exponential_sigmas: bool,
    #[serde(default)]
    pub use_beta_sigmas: bool,
    #[serde(default)]
    pub stochastic_sampling: bool,
}

fn default_train_timesteps() -> usize {
    1000
}
fn default_shift() -> f64 {
    1.0
}
fn default_base_shift() -> f64 {
    0.5
}
fn default_max_shift() -> f64 {
    1.15
}
fn default_base_seq_len() -> usize {
    256
}
fn default_max_seq_len() -> usize {
    4096
}
fn default_time_shift_type() -> String {
    "exponential".into()
}

impl SchedulerConfig {
    /// Z-Image-Turbo's shipped `scheduler_config.json`: static shift 3, 1000 train timesteps.
    pub fn turbo() -> Self {
        Self {
            shift: 3.0,
            ..Self::diffusers_defaults()
        }
    }

    /// The defaults of diffusers' `FlowMatchEulerDiscreteScheduler.__init__`.
    pub fn diffusers_defaults() -> Self {
        Self {
            num_train_timesteps: default_train_timesteps(),
            shift: default_shift(),
            use_dynamic_shifting: false,
            base_shift: default_base_shift(),
            max_shift: default_max_shift(),
            base_image_seq_len: default_base_seq_len(),
            max_image_seq_len: default_max_seq_len(),
            time_shift_type: default_time_shift_type(),
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            stochastic_sampling: false,
        }
    }

    /// Reads and validates `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ModelError::load(path, format!("cannot read: {e}")))?;
        let config: Self = serde_json::from_str(&text)
            .map_err(|e| ModelError::load(path, format!("not a valid scheduler config: {e}")))?;
        config
            .validate()
            .map_err(|problem| ModelError::load(path, problem))?;
        Ok(config)
    }

    /// Refuses options this implementation does not reproduce.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let unsupported = [
            ("invert_sigmas", self.invert_sigmas),
            ("shift_terminal", self.shift_terminal.is_some_and(|t| t != 0.0)),
            ("use_karras_sigmas", self.use_karras_sigmas),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
            ("stochastic_sampling", self.stochastic_sampling),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, on)| *on) {
            return Err(format!(
                "scheduler option `{name}` is not supported (Z-Image does not use it)"
            ));
        }
        if !matches!(self.time_shift_type.as_str(), "exponential" | "linear") {
            return Err(format!(
                "time_shift_type must be \"exponential\" or \"linear\", got {:?}",
                self.time_shift_type
            ));
        }
        if self.num_train_timesteps == 0 {
            return Err("num_train_timesteps must be positive".into());
        }
        if !(self.shift.is_finite() && self.shift > 0.0) {
            return Err(format!("shift must be a positive number, got {}", self.shift));
        }
        Ok(())
    }

    /// diffusers' `calculate_shift`: `mu` grows linearly with the image token count.
    pub fn mu_for(&self, image_seq_len: usize) -> f64 {
        let m = (self.max_shift - self.base_shift)
            / (self.max_image_seq_len as f64 - self.base_image_seq_len as f64);
        let b = self.base_shift - m * self.base_image_seq_len as f64;
        image_seq_len as f64 * m + b
    }
}

/// The sigmas and timesteps of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `steps + 1` values, decreasing, the last one 0.
    pub sigmas: Vec<f32>,
    /// `steps` values, `sigma · num_train_timesteps`.
    pub timesteps: Vec<f32>,
}

impl Schedule {
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The transformer's time input for step `i`: `(1000 − t) / 1000`, float32 as the pipeline
    /// computes it (the transformer multiplies by its own `t_scale`).
    pub fn model_time(&self, i: usize) -> f32 {
        (1000.0 - self.timesteps[i]) / 1000.0
    }

    /// One Euler step with the transformer's raw output `velocity` (the pipeline negates it):
    /// `latents + (σ[i+1] − σ[i]) · (−velocity)`, in float32.
    pub fn step(&self, i: usize, latents: &Tensor, velocity: &Tensor) -> Result<Tensor> {
        if i >= self.steps() {
            return Err(ModelError::Compute(format!(
                "scheduler step {i} out of range ({} steps)",
                self.steps()
            )));
        }
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        let velocity = velocity.to_dtype(DType::F32)?;
        // -(v) · dt == v · (−dt) exactly in IEEE arithmetic.
        let update = velocity.affine(-f64::from(dt), 0.0)?;
        Ok(latents.to_dtype(DType::F32)?.add(&update)?)
    }
}

/// The scheduler: a validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowMatchEuler {
    config: SchedulerConfig,
}

impl FlowMatchEuler {
    pub fn new(config: SchedulerConfig) -> Result<Self> {
        config.validate().map_err(ModelError::BadInput)?;
        Ok(Self { config })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The schedule for `steps` steps on an image of `image_seq_len` patch tokens
    /// (`(h/16)·(w/16)`; used only by dynamic shifting).
    pub fn schedule(&self, steps: usize, image_seq_len: usize) -> Result<Schedule> {
        if steps == 0 {
            return Err(ModelError::BadInput("steps must be at least 1".into()));
        }
        let base = torch_linspace_f32(1.0, 1.0 / steps as f64, steps);
        let shifted: Vec<f32> = if self.config.use_dynamic_shifting {
            let exp_mu = self.config.mu_for(image_seq_len).exp();
            let linear = self.config.time_shift_type == "linear";
            let mu = if linear {
                self.config.mu_for(image_seq_len) as f32
            } else {
                exp_mu as f32
            };
            // time_shift(mu, sigma = 1.0, t): mu' / (mu' + (1/t − 1)^1)
            base.iter().map(|&t| mu / (mu + (1.0 / t - 1.0))).collect()
        } else {
            let shift = self.config.shift as f32;
            let shift_minus_one = (self.config.shift - 1.0) as f32;
            base.iter()
                .map(|&s| shift * s / (1.0 + shift_minus_one * s))
                .collect()
        };
        let train = self.config.num_train_timesteps as f32;
        let timesteps = shifted.iter().map(|&s| s * train).collect();
        let mut sigmas = shifted;
        sigmas.push(0.0);
        Ok(Schedule { sigmas, timesteps })
    }
}

/// `torch.linspace(start, end, steps)` for float32 on the CPU: the step is computed in float32,
/// the first half counts up from `start`, the second half down from `end`, each value with one
/// rounding (checked against torch 2.15 for 1..=100 steps).
pub fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let halfway = steps / 2;
            (0..steps)
                .map(|i| {
                    // torch evaluates these with a fused multiply-add (one rounding).
                    if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((steps - i - 1) as f32, end)
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_torch_for_nine_steps() {
        // torch.linspace(1.0, 1/9, 9).tolist()
        let torch = [
            1.0,
            0.888_888_9,
            0.777_777_8,
            0.666_666_7,
            0.555_555_6,
            0.444_444_45,
            0.333_333_34,
            0.222_222_22,
            0.111_111_11,
        ];
        assert_eq!(torch_linspace_f32(1.0, 1.0 / 9.0, 9), torch);
    }

    #[test]
    fn turbo_schedule_ends_at_zero_and_decreases() {
        let schedule = FlowMatchEuler::new(SchedulerConfig::turbo())
            .unwrap()
            .schedule(8, 4096)
            .unwrap();
        assert_eq!(schedule.sigmas.len(), 9);
        assert_eq!(schedule.sigmas[0], 1.0);
        assert_eq!(*schedule.sigmas.last().unwrap(), 0.0);
        assert!(schedule.sigmas.windows(2).all(|w| w[0] > w[1]));
        // shift 3: σ(0.5) = 1.5 / 2 = 0.75
        assert_eq!(schedule.sigmas[4], 0.75);
        assert_eq!(schedule.timesteps[4], 750.0);
    }

    #[test]
    fn unsupported_options_are_refused() {
        let config = SchedulerConfig {
            use_karras_sigmas: true,
            ..SchedulerConfig::turbo()
        };
        assert!(FlowMatchEuler::new(config)
            .unwrap_err()
            .to_string()
            .contains("use_karras_sigmas"));
    }

    #[test]
    fn config_parses_the_shipped_json() {
        let json = r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.36.0",
            "num_train_timesteps": 1000, "use_dynamic_shifting": false, "shift": 3.0}"#;
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config, SchedulerConfig::turbo());
    }

    #[test]
    fn euler_step_moves_against_the_velocity() {
        let schedule = Schedule {
            sigmas: vec![1.0, 0.25, 0.0],
            timesteps: vec![1000.0, 250.0],
        };
        let latents = Tensor::new(&[1.0f32, 2.0], &candle_core::Device::Cpu).unwrap();
        let velocity = Tensor::new(&[4.0f32, -4.0], &candle_core::Device::Cpu).unwrap();
        let next = schedule
            .step(0, &latents, &velocity)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // latents + (0.25 − 1) · (−v) = latents + 0.75 v
        assert_eq!(next, vec![4.0, -1.0]);
    }
}
