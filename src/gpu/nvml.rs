//! NVIDIA telemetry through NVML. libnvidia-ml is loaded at run time, so the binary runs (and
//! falls back) where there is no driver.

use std::ffi::OsStr;
use std::time::Instant;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use super::{DeviceInfo, GpuSample, MemorySource, Telemetry, TelemetryError};

/// How the CUDA device the model runs on is found among NVML's devices.
#[derive(Debug, Clone, PartialEq)]
enum DeviceKey {
    Index(u32),
    Uuid(String),
}

pub struct NvmlTelemetry {
    nvml: Nvml,
    key: DeviceKey,
    info: DeviceInfo,
    pid: u32,
}

impl NvmlTelemetry {
    /// Opens CUDA device `cuda_ordinal`, loading NVML from `library` (default: the system's
    /// libnvidia-ml.so.1). Errors when NVML cannot be loaded or the device does not exist.
    pub fn open(cuda_ordinal: u32, library: Option<&OsStr>) -> Result<Self, NvmlError> {
        let nvml = match library {
            Some(path) => Nvml::builder().lib_path(path).init()?,
            None => Nvml::init()?,
        };
        let key = device_key(
            cuda_ordinal,
            std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        );
        let (name, driver_version) = {
            let device = lookup(&nvml, &key)?;
            (device.name()?, nvml.sys_driver_version().ok())
        };
        let info = DeviceInfo {
            name,
            driver_version,
            source: MemorySource::DeviceVram,
            unavailable_reason: None,
        };
        Ok(Self {
            nvml,
            key,
            info,
            pid: std::process::id(),
        })
    }
}

fn lookup<'n>(nvml: &'n Nvml, key: &DeviceKey) -> Result<Device<'n>, NvmlError> {
    match key {
        DeviceKey::Index(index) => nvml.device_by_index(*index),
        DeviceKey::Uuid(uuid) => nvml.device_by_uuid(uuid.as_str()),
    }
}

/// CUDA ordinals count the devices in CUDA_VISIBLE_DEVICES; NVML sees all of them. Map through
/// the list when it is set (indices or UUIDs). CUDA's default order (fastest first) can differ
/// from NVML's (PCI bus) on mixed machines; set CUDA_DEVICE_ORDER=PCI_BUS_ID there.
fn device_key(cuda_ordinal: u32, visible: Option<&str>) -> DeviceKey {
    let entry = visible.and_then(|list| list.split(',').map(str::trim).nth(cuda_ordinal as usize));
    match entry {
        Some(e) if e.starts_with("GPU-") || e.starts_with("MIG-") => DeviceKey::Uuid(e.to_string()),
        Some(e) => e
            .parse()
            .map(DeviceKey::Index)
            .unwrap_or(DeviceKey::Index(cuda_ordinal)),
        None => DeviceKey::Index(cuda_ordinal),
    }
}

impl Telemetry for NvmlTelemetry {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn sample(&mut self) -> Result<GpuSample, TelemetryError> {
        let device = lookup(&self.nvml, &self.key)?;
        let at = Instant::now();
        let memory = device.memory_info()?;
        // Optional readings: many cards or drivers lack some; None rather than failing the sample.
        let process_memory = device.running_compute_processes().ok().and_then(|processes| {
            processes
                .iter()
                .find(|p| p.pid == self.pid)
                .and_then(|p| match p.used_gpu_memory {
                    UsedGpuMemory::Used(bytes) => Some(bytes),
                    UsedGpuMemory::Unavailable => None,
                })
        });
        Ok(GpuSample {
            at,
            memory_used: memory.used,
            memory_total: Some(memory.total),
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
            power_watts: device.power_usage().ok().map(milliwatts),
            power_limit_watts: device.enforced_power_limit().ok().map(milliwatts),
            process_memory,
            // NVML has no device high-water counter; the sampler's job rate has to catch peaks.
            memory_high_water: None,
        })
    }
}

fn milliwatts(mw: u32) -> f64 {
    f64::from(mw) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_devices_map_cuda_ordinals_to_nvml_devices() {
        assert_eq!(device_key(0, None), DeviceKey::Index(0));
        assert_eq!(device_key(1, Some("3,5")), DeviceKey::Index(5));
        assert_eq!(device_key(0, Some(" 2 ")), DeviceKey::Index(2));
        assert_eq!(
            device_key(0, Some("GPU-abc,GPU-def")),
            DeviceKey::Uuid("GPU-abc".into())
        );
        // Ordinal past the list: leave it to NVML to report the missing device.
        assert_eq!(device_key(4, Some("1")), DeviceKey::Index(4));
    }
}
