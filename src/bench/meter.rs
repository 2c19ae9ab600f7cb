//! Memory around each bench job, from the telemetry sampler (`crate::gpu`): on a GPU, device
//! memory from NVML with a peak window sampled at the job rate (≥ 20 Hz); on the CPU, the
//! process's resident memory, whose per-job peak is exact (the kernel's high-water mark is
//! reset when the window opens). "In use after" is one more sample taken once the job is over.

use std::time::{Duration, Instant};

use super::record::MemoryReading;
use super::report::{DeviceDescription, MemorySource};
use super::runner::MemoryMeter;
use crate::gpu::{PeakTracker, PeakWindow, Sampler, SamplerConfig};

pub struct SamplerMeter {
    sampler: Sampler,
    tracker: PeakTracker,
    window: Option<PeakWindow>,
    sample_hz: f64,
}

impl SamplerMeter {
    pub fn new(sampler: Sampler, config: SamplerConfig) -> Self {
        let tracker = sampler.peak_tracker();
        let sample_hz = 1.0 / config.job_interval.as_secs_f64().max(1e-3);
        Self {
            sampler,
            tracker,
            window: None,
            sample_hz,
        }
    }
}

impl MemoryMeter for SamplerMeter {
    fn device(&self) -> DeviceDescription {
        let info = self.sampler.info();
        let (card, memory_source) = match info.source {
            crate::gpu::MemorySource::DeviceVram => (
                Some(info.name.clone()),
                MemorySource::Nvml {
                    sample_hz: self.sample_hz,
                },
            ),
            crate::gpu::MemorySource::ProcessRss => (cpu_name(), MemorySource::ProcessRss),
        };
        DeviceDescription {
            card,
            driver: info.driver_version.clone(),
            memory_source,
            total_bytes: self.sampler.latest().and_then(|s| s.memory_total),
        }
    }

    /// Opens the job's window and waits for its first sample, so the baseline (and, on the CPU,
    /// the high-water reset) comes before the job's first allocation.
    fn job_started(&mut self) {
        let window = self.tracker.start();
        wait_for_samples(&window, 1);
        self.window = Some(window);
    }

    /// One more sample after the job's end closes the window: the peak includes the job's last
    /// moments and `last_used` is what stays in use after it.
    fn job_finished(&mut self) -> MemoryReading {
        let peak = self.window.take().and_then(|window| {
            let seen = window.current().map_or(0, |p| p.samples);
            self.tracker.sample_now();
            wait_for_samples(&window, seen + 1);
            window.finish()
        });
        let total = peak.and_then(|p| p.memory_total);
        let used = peak.map(|p| p.last_used);
        MemoryReading {
            peak_bytes: peak.map(|p| p.peak_used),
            used_after_bytes: used,
            free_after_bytes: total.zip(used).map(|(t, u)| t.saturating_sub(u)),
            total_bytes: total,
        }
    }
}

/// Waits (at most half a second) until the window has seen `count` samples.
fn wait_for_samples(window: &PeakWindow, count: u32) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while window.current().map_or(0, |p| p.samples) < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The meter for a device string ("cpu", "cuda", "cuda:N"): NVML when it answers for a CUDA
/// device, else this process's memory. `None` only if the sampler thread cannot start.
pub fn open(device: &str) -> std::io::Result<SamplerMeter> {
    let config = SamplerConfig::default();
    let sampler = Sampler::spawn(crate::gpu::open(device), config, None)?;
    Ok(SamplerMeter::new(sampler, config))
}

fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let name = info.lines().find_map(|l| {
        l.strip_prefix("model name")?
            .split_once(':')
            .map(|(_, v)| v.trim().to_owned())
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(format!("CPU: {name} ({threads} threads)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{DeviceInfo, GpuSample, ScriptedTelemetry};

    #[test]
    fn reports_the_window_peak_and_the_reading_after_the_job() {
        let info = DeviceInfo {
            name: "Scripted GPU".into(),
            driver_version: Some("550.1".into()),
            source: crate::gpu::MemorySource::DeviceVram,
            unavailable_reason: None,
        };
        let template = GpuSample {
            at: Instant::now(),
            memory_used: 100,
            memory_total: Some(1000),
            utilization_percent: None,
            temperature_c: None,
            power_watts: None,
            power_limit_watts: None,
            process_memory: None,
            memory_high_water: None,
        };
        let telemetry = ScriptedTelemetry::new(info, template);
        let feeder = telemetry.feeder();
        let config = SamplerConfig {
            interval: Duration::from_secs(5),
            job_interval: Duration::from_millis(5),
            history: Duration::from_secs(10),
        };
        let sampler = Sampler::spawn(Box::new(telemetry), config, None).unwrap();
        let mut meter = SamplerMeter::new(sampler, config);
        let device = meter.device();
        assert_eq!(device.card.as_deref(), Some("Scripted GPU"));
        assert_eq!(device.driver.as_deref(), Some("550.1"));
        assert_eq!(device.memory_source, MemorySource::Nvml { sample_hz: 200.0 });

        meter.job_started();
        feeder.push([300, 900, 400, 250]);
        // Until the sampler has taken all four (slow on a loaded CI machine, so poll).
        let deadline = Instant::now() + Duration::from_secs(10);
        while meter.sampler.latest().map(|s| s.memory_used) != Some(250) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let reading = meter.job_finished();
        assert_eq!(reading.peak_bytes, Some(900));
        assert_eq!(
            reading.used_after_bytes,
            Some(250),
            "the steady value after the job"
        );
        assert_eq!(reading.total_bytes, Some(1000));
        assert_eq!(reading.free_after_bytes, Some(750));
    }
}
