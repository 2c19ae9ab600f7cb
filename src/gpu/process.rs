//! No GPU telemetry: report this process's resident memory (Linux `/proc`) against the machine's
//! RAM, so CPU runs still show a memory gauge and a per-job peak. The per-job peak is exact: at
//! job start the kernel's RSS high-water mark is reset (`/proc/self/clear_refs` = 5) and each
//! sample reports `VmHWM`, so allocations freed between two samples still count.

use std::time::Instant;

use super::{DeviceInfo, GpuSample, MemorySource, Telemetry, TelemetryError};

pub struct ProcessTelemetry {
    info: DeviceInfo,
    ram_total: Option<u64>,
    /// The high-water mark was reset at the last job start, so VmHWM is that job's peak.
    high_water_reset: bool,
}

impl ProcessTelemetry {
    /// `reason` says why there is no GPU telemetry; it is shown in the GPU pane.
    pub fn new(reason: &str) -> Self {
        let ram_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| kib_field(&text, "MemTotal:"));
        let info = DeviceInfo {
            name: "no GPU telemetry (process memory)".to_string(),
            driver_version: None,
            source: MemorySource::ProcessRss,
            unavailable_reason: Some(reason.to_string()),
        };
        Self {
            info,
            ram_total,
            high_water_reset: false,
        }
    }
}

impl Telemetry for ProcessTelemetry {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn sample(&mut self) -> Result<GpuSample, TelemetryError> {
        let at = Instant::now();
        let status = std::fs::read_to_string("/proc/self/status")?;
        let rss = kib_field(&status, "VmRSS:")
            .ok_or_else(|| TelemetryError::Other("no VmRSS line in /proc/self/status".into()))?;
        Ok(GpuSample {
            at,
            memory_used: rss,
            memory_total: self.ram_total,
            utilization_percent: None,
            temperature_c: None,
            power_watts: None,
            power_limit_watts: None,
            process_memory: Some(rss),
            memory_high_water: if self.high_water_reset {
                kib_field(&status, "VmHWM:")
            } else {
                None
            },
        })
    }

    fn job_started(&mut self) {
        self.high_water_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    }
}

/// The value of a "Name:   1234 kB" line, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_fields() {
        let status = "Name:\tzimage\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(kib_field(status, "VmSwap:"), None);
        assert_eq!(kib_field("VmRSS: lots", "VmRSS:"), None);
    }
}
