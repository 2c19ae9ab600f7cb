//! FlowMatch Euler vs diffusers' `FlowMatchEulerDiscreteScheduler` as `ZImagePipeline` drives it:
//! sigmas, timesteps and the transformer's time input for 8 and 9 steps at three sizes, and
//! the Euler update of the fixture pipeline run.

use zimage_tui::model::scheduler::{FlowMatchEuler, SchedulerConfig};

mod common;
use common::{fixtures, max_abs_and_rel, reference};

fn scheduler() -> FlowMatchEuler {
    let config =
        SchedulerConfig::from_file(&fixtures().join("tiny/scheduler/scheduler_config.json")).unwrap();
    FlowMatchEuler::new(config).unwrap()
}

fn max_abs_diff(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn sigmas_timesteps_and_time_inputs_match_diffusers() {
    let reference = reference();
    let scheduler = scheduler();
    let mut worst = (0f32, 0f32, 0f32);
    for steps in [8usize, 9] {
        for (height, width) in [(512usize, 512usize), (1024, 1024), (1280, 768)] {
            let key = format!("sched.s{steps}.h{height}w{width}");
            let schedule = scheduler.schedule(steps, (height / 16) * (width / 16)).unwrap();
            let sigmas = reference[&format!("{key}.sigmas")].to_vec1::<f32>().unwrap();
            let timesteps = reference[&format!("{key}.timesteps")].to_vec1::<f32>().unwrap();
            let dit_t = reference[&format!("{key}.dit_t")].to_vec1::<f32>().unwrap();
            let model_times: Vec<f32> = (0..steps).map(|i| schedule.model_time(i)).collect();

            let errors = (
                max_abs_diff(&schedule.sigmas, &sigmas),
                max_abs_diff(&schedule.timesteps, &timesteps) / 1000.0,
                max_abs_diff(&model_times, &dit_t),
            );
            assert!(errors.0 <= 1e-6, "{key}: sigmas differ by {}", errors.0);
            assert!(errors.1 <= 1e-6, "{key}: timesteps/1000 differ by {}", errors.1);
            assert!(errors.2 <= 1e-6, "{key}: time inputs differ by {}", errors.2);
            worst = (
                worst.0.max(errors.0),
                worst.1.max(errors.1),
                worst.2.max(errors.2),
            );
        }
    }
    eprintln!(
        "scheduler: max |Δσ| {:.1e}, max |Δt|/1000 {:.1e}, max |Δt_model| {:.1e}",
        worst.0, worst.1, worst.2
    );
}

#[test]
fn euler_steps_reproduce_the_pipeline_latents() {
    let reference = reference();
    let steps = 8;
    let schedule = scheduler().schedule(steps, 24).unwrap();
    let mut latents = reference["pipe.latents_init"].clone();
    for i in 0..steps {
        let velocity = reference[&format!("pipe.dit_out.{i}")]
            .squeeze(1)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        latents = schedule.step(i, &latents, &velocity).unwrap();
        let expected = &reference[&format!("pipe.latents.{i}")];
        let (diff, _) = max_abs_and_rel(&latents, expected);
        assert!(diff <= 1e-6, "step {i}: latents differ by {diff}");
    }
}
