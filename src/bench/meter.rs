//! Memory meters for the runner. On the CPU: the process's resident set, with the kernel's own
//! high-water mark reset before each job (`/proc/self/clear_refs`, value 5), so the per-job peak
//! is exact without sampling.

use super::record::MemoryReading;
use super::report::{DeviceDescription, MemorySource};
use super::runner::MemoryMeter;

/// Process RSS on Linux; on other systems every figure stays empty.
pub struct ProcessRssMeter {
    /// Whether the high-water mark could be reset for the running job.
    peak_reset: bool,
}

impl ProcessRssMeter {
    pub fn new() -> Self {
        Self { peak_reset: false }
    }
}

impl Default for ProcessRssMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMeter for ProcessRssMeter {
    fn device(&self) -> DeviceDescription {
        DeviceDescription {
            card: cpu_name(),
            driver: None,
            memory_source: if read_status_kib("VmRSS").is_some() {
                MemorySource::ProcessRss
            } else {
                MemorySource::Unavailable
            },
            total_bytes: read_meminfo_kib("MemTotal").map(|k| k * 1024),
        }
    }

    fn job_started(&mut self) {
        self.peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    }

    fn job_finished(&mut self) -> MemoryReading {
        let used = read_status_kib("VmRSS").map(|k| k * 1024);
        let peak = if self.peak_reset {
            read_status_kib("VmHWM").map(|k| k * 1024)
        } else {
            None
        };
        MemoryReading {
            peak_bytes: peak,
            used_after_bytes: used,
            free_after_bytes: read_meminfo_kib("MemAvailable").map(|k| k * 1024),
            total_bytes: read_meminfo_kib("MemTotal").map(|k| k * 1024),
        }
    }
}

/// A "Key:   1234 kB" line of a /proc file, in KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn read_status_kib(key: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, key)
}

fn read_meminfo_kib(key: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

fn cpu_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let name = info.lines().find_map(|l| {
        l.strip_prefix("model name")?
            .split_once(':')
            .map(|(_, v)| v.trim())
    })?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(format!("CPU: {name} ({cores} threads)"))
}

/// Device memory from the telemetry sampler (NVML on a GPU): a peak window per job at the
/// sampler's job rate (≥ 20 Hz), the latest sample for "in use after".
pub struct SamplerMeter {
    sampler: crate::gpu::Sampler,
    tracker: crate::gpu::PeakTracker,
    window: Option<crate::gpu::PeakWindow>,
    sample_hz: f64,
}

impl SamplerMeter {
    pub fn new(sampler: crate::gpu::Sampler, config: crate::gpu::SamplerConfig) -> Self {
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

impl SamplerMeter {
    /// A sample taken now (not the last one of the job, which may predate its final frees): a
    /// new window samples at once; its baseline is that sample.
    fn fresh_reading(&self) -> Option<crate::gpu::PeakMemory> {
        let window = self.tracker.start();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while window.current().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        window.finish()
    }
}

impl MemoryMeter for SamplerMeter {
    fn device(&self) -> DeviceDescription {
        let info = self.sampler.info();
        DeviceDescription {
            card: Some(info.name.clone()),
            driver: info.driver_version.clone(),
            memory_source: match info.source {
                crate::gpu::MemorySource::DeviceVram => MemorySource::Nvml {
                    sample_hz: self.sample_hz,
                },
                crate::gpu::MemorySource::ProcessRss => MemorySource::ProcessRss,
            },
            total_bytes: self.sampler.latest().and_then(|s| s.memory_total),
        }
    }

    fn job_started(&mut self) {
        self.window = Some(self.tracker.start());
    }

    fn job_finished(&mut self) -> MemoryReading {
        let peak = self.window.take().and_then(|w| w.finish());
        let after = self.fresh_reading();
        let total = after
            .and_then(|a| a.memory_total)
            .or(peak.and_then(|p| p.memory_total));
        let used = after.map(|a| a.baseline_used);
        MemoryReading {
            peak_bytes: peak.map(|p| p.peak_used),
            used_after_bytes: used,
            free_after_bytes: total.zip(used).map(|(t, u)| t.saturating_sub(u)),
            total_bytes: total,
        }
    }
}

/// The meter for a device string: the sampler over NVML on a GPU when NVML answers, else the
/// process's RSS (exact per-job peak).
pub fn open(device: &str) -> Box<dyn MemoryMeter> {
    if device.trim().eq_ignore_ascii_case("cpu") {
        return Box::new(ProcessRssMeter::new());
    }
    let telemetry = crate::gpu::open(device);
    if !telemetry.info().has_gpu_telemetry() {
        return Box::new(ProcessRssMeter::new());
    }
    let config = crate::gpu::SamplerConfig::default();
    match crate::gpu::Sampler::spawn(telemetry, config, None) {
        Ok(sampler) => Box::new(SamplerMeter::new(sampler, config)),
        Err(_) => Box::new(ProcessRssMeter::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fields() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(kib_field(status, "VmRSS"), Some(1024));
        assert_eq!(kib_field(status, "VmHWM"), Some(2048));
        assert_eq!(kib_field(status, "VmSwap"), None);
    }

    #[test]
    fn sampler_meter_reports_the_window_peak_and_a_fresh_reading_after() {
        use crate::gpu::{
            DeviceInfo, GpuSample, MemorySource as Source, Sampler, SamplerConfig, ScriptedTelemetry,
        };
        use std::time::{Duration, Instant};
        let info = DeviceInfo {
            name: "Scripted GPU".into(),
            driver_version: Some("550.1".into()),
            source: Source::DeviceVram,
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
        // Until the sampler has taken all four (slow under a loaded CI machine, so poll).
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

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_covers_an_allocation_inside_the_job() {
        let mut meter = ProcessRssMeter::new();
        meter.job_started();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        drop(block);
        let reading = meter.job_finished();
        let (peak, used) = (reading.peak_bytes.unwrap(), reading.used_after_bytes.unwrap());
        assert!(peak >= used + (32 << 20), "peak {peak} used {used}");
    }
}
