//! Opt-in time per kernel class: with profiling on, `scope` waits for the device before and after
//! the work it wraps and adds the wall time to its class. Off (the default) it only runs the work:
//! one relaxed atomic load per call. Scopes must not nest (a nested scope's time would count twice).
//!
//! Used by `zimage-tui bench --profile`-style measurement programs (examples/step_profile.rs) to
//! show where a step's time goes; the synchronisation makes the total somewhat larger than an
//! unprofiled run, which is said wherever the table is printed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<&'static str, ClassTime>> = Mutex::new(BTreeMap::new());

/// Total time and call count of one kernel class, and the most device memory in use when one of
/// its calls ended (CUDA only: what the driver reports in use on the device, like NVML).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ClassTime {
    pub calls: u64,
    #[serde(with = "super::secs")]
    pub total: Duration,
    pub max_used_bytes: Option<u64>,
}

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Runs `work`; when profiling, synchronised on `device` and timed under `class`.
pub fn scope<T, E>(class: &'static str, device: &Device, work: impl FnOnce() -> Result<T, E>) -> Result<T, E>
where
    E: From<candle_core::Error>,
{
    if !enabled() {
        return work();
    }
    device.synchronize()?;
    let started = Instant::now();
    let out = work()?;
    device.synchronize()?;
    let elapsed = started.elapsed();
    let used = device_memory_used(device);
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let entry = table.entry(class).or_default();
    entry.calls += 1;
    entry.total += elapsed;
    entry.max_used_bytes = entry.max_used_bytes.max(used);
    Ok(out)
}

/// Device memory in use (total − free) on a CUDA device; None elsewhere.
fn device_memory_used(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        use candle_core::cuda_backend::cudarc::driver::result::mem_get_info;
        // the device was just synchronised on this thread, so its context is current
        return mem_get_info().ok().map(|(free, total)| (total - free) as u64);
    }
    let _ = device;
    None
}

/// The classes measured since the last `take`, largest total first; clears the table.
pub fn take() -> Vec<(&'static str, ClassTime)> {
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut rows: Vec<_> = std::mem::take(&mut *table).into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.total));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_add_up_per_class_only_when_enabled() {
        let device = Device::Cpu;
        let work = || -> candle_core::Result<u32> {
            std::thread::sleep(Duration::from_millis(2));
            Ok(7)
        };
        // other tests of this binary may run model code meanwhile: look only at our classes
        let ours = |rows: Vec<(&'static str, ClassTime)>| -> Vec<(&'static str, ClassTime)> {
            rows.into_iter().filter(|(c, _)| c.starts_with("test.")).collect()
        };
        assert_eq!(scope("test.off", &device, work).expect("runs"), 7);
        set_enabled(true);
        for _ in 0..3 {
            scope("test.a", &device, work).expect("runs");
        }
        scope("test.b", &device, work).expect("runs");
        set_enabled(false);
        let rows = ours(take());
        let calls: Vec<_> = rows.iter().map(|(c, t)| (*c, t.calls)).collect();
        assert_eq!(calls, vec![("test.a", 3), ("test.b", 1)]);
        assert!(rows[0].1.total >= Duration::from_millis(6));
        assert!(ours(take()).is_empty());
    }
}
