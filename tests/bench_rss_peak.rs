//! On the CPU the bench's per-job peak is the process's RSS high-water mark, reset when the job
//! starts, so a short allocation freed before the job ends still counts. Alone in its binary:
//! the reset is process-wide.

use zimage_tui::bench::meter;
use zimage_tui::bench::report::MemorySource;
use zimage_tui::bench::MemoryMeter;

#[cfg(target_os = "linux")]
#[test]
fn a_freed_allocation_still_counts_in_the_job_peak() {
    let mut meter = meter::open("cpu").expect("sampler thread");
    assert_eq!(meter.device().memory_source, MemorySource::ProcessRss);
    assert!(meter.device().card.is_some_and(|c| c.starts_with("CPU")));
    meter.job_started();
    let block = vec![1u8; 64 << 20];
    std::hint::black_box(&block);
    drop(block);
    let reading = meter.job_finished();
    let (peak, used) = (reading.peak_bytes.unwrap(), reading.used_after_bytes.unwrap());
    assert!(peak >= used + (32 << 20), "peak {peak} vs in use after {used}");
    assert!(reading.free_after_bytes.unwrap() > 0);
}
