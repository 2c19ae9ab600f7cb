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

/// The meter for a device string. Until the GPU sampler is wired in, every device gets the
/// process's RSS (exact per-job peak); the report says which source it used.
pub fn open(device: &str) -> Box<dyn MemoryMeter> {
    let _ = device;
    Box::new(ProcessRssMeter::new())
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
