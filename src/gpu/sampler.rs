//! The sampler thread: polls a [`Telemetry`] at the dashboard rate, at the job rate while a
//! [`PeakWindow`] is open, and keeps the latest sample, a history ring and per-window peaks.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::{DeviceInfo, GpuSample, MemorySource, Telemetry};

/// Polling rates and history length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Poll interval while no peak window is open (the dashboard's rate). Also the resolution of
    /// the history: samples taken faster are merged, keeping the highest memory reading.
    pub interval: Duration,
    /// Poll interval while a peak window is open; 50 ms (20 Hz) catches short allocation peaks.
    pub job_interval: Duration,
    /// How far back the history reaches.
    pub history: Duration,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            job_interval: Duration::from_millis(50),
            history: Duration::from_secs(5 * 60),
        }
    }
}

impl SamplerConfig {
    /// The default config at `dashboard_hz` samples per second (clamped to 0.1..=100 Hz); the job
    /// rate stays at least 20 Hz.
    pub fn with_rate(dashboard_hz: f64) -> Self {
        let hz = if dashboard_hz.is_finite() {
            dashboard_hz.clamp(0.1, 100.0)
        } else {
            4.0
        };
        let interval = Duration::from_secs_f64(1.0 / hz);
        Self {
            interval,
            job_interval: interval.min(Duration::from_millis(50)),
            ..Self::default()
        }
    }

    fn history_len(&self) -> usize {
        let slots = self.history.as_secs_f64() / self.interval.as_secs_f64().max(1e-3);
        (slots.ceil() as usize).clamp(1, 100_000)
    }
}

/// The highest memory reading seen while a [`PeakWindow`] was open.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PeakMemory {
    /// What the figures measure: device VRAM (all processes) or this process's RSS.
    pub source: MemorySource,
    /// Highest `memory_used` in the window.
    pub peak_used: u64,
    /// `memory_used` of the window's first sample (what was in use before the job allocated).
    pub baseline_used: u64,
    /// `memory_used` of the window's latest sample (in use after the job, once finished);
    /// free after the job = `memory_total - last_used`.
    pub last_used: u64,
    /// The device's (or machine's) total memory.
    pub memory_total: Option<u64>,
    /// Highest `process_memory` in the window, where the device reports it.
    pub peak_process: Option<u64>,
    /// How many samples the window saw.
    pub samples: u32,
}

impl PeakMemory {
    /// `high_water`: the sample's high-water mark, when it was reset for this window.
    fn first(source: MemorySource, sample: &GpuSample, high_water: Option<u64>) -> Self {
        Self {
            source,
            peak_used: sample.memory_used.max(high_water.unwrap_or(0)),
            baseline_used: sample.memory_used,
            last_used: sample.memory_used,
            memory_total: sample.memory_total,
            peak_process: sample.process_memory,
            samples: 1,
        }
    }

    fn add(&mut self, sample: &GpuSample, high_water: Option<u64>) {
        self.peak_used = self
            .peak_used
            .max(sample.memory_used)
            .max(high_water.unwrap_or(0));
        self.last_used = sample.memory_used;
        self.peak_process = match (self.peak_process, sample.process_memory) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.memory_total = sample.memory_total.or(self.memory_total);
        self.samples += 1;
    }
}

/// (the window's job generation, its peak so far).
type PeakSlot = Mutex<(u64, Option<PeakMemory>)>;

struct State {
    latest: Option<GpuSample>,
    /// (time slot since start, sample); one entry per slot, oldest first.
    history: VecDeque<(u64, GpuSample)>,
    history_len: usize,
    windows: Vec<Weak<PeakSlot>>,
    config: SamplerConfig,
    last_error: Option<String>,
    /// Incremented by each new window.
    job_generation: u64,
    /// The generation the telemetry's high-water counter was last reset for (by the thread,
    /// before sampling): a sample's high-water mark belongs to windows up to this generation.
    reset_generation: u64,
    wake: bool,
    stop: bool,
}

struct Shared {
    info: DeviceInfo,
    started: Instant,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// Fresh state: no samples, no windows, started now.
    fn new(info: DeviceInfo, config: SamplerConfig) -> Self {
        let state = State {
            latest: None,
            history: VecDeque::new(),
            history_len: config.history_len(),
            windows: Vec::new(),
            config,
            last_error: None,
            job_generation: 0,
            reset_generation: 0,
            wake: false,
            stop: false,
        };
        Self {
            info,
            started: Instant::now(),
            state: Mutex::new(state),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, sample: GpuSample) {
        let mut state = self.lock();
        let interval = state.config.interval.as_secs_f64().max(1e-3);
        let slot = (sample.at.saturating_duration_since(self.started).as_secs_f64() / interval) as u64;
        match state.history.back_mut() {
            Some((last_slot, last)) if *last_slot == slot => {
                // Faster than the history's resolution: keep the highest memory of the slot.
                let memory_used = last.memory_used.max(sample.memory_used);
                let process_memory = last.process_memory.max(sample.process_memory);
                *last = GpuSample {
                    memory_used,
                    process_memory,
                    ..sample.clone()
                };
            }
            _ => {
                if state.history.len() >= state.history_len {
                    state.history.pop_front();
                }
                state.history.push_back((slot, sample.clone()));
            }
        }
        let source = self.info.source;
        let reset_generation = state.reset_generation;
        state.windows.retain(|window| match window.upgrade() {
            Some(slot) => {
                let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
                let (generation, peak) = &mut *guard;
                // A high-water mark from before this window's reset may hold an earlier job's peak.
                let high_water = sample
                    .memory_high_water
                    .filter(|_| reset_generation >= *generation);
                match peak.as_mut() {
                    Some(peak) => peak.add(&sample, high_water),
                    None => *peak = Some(PeakMemory::first(source, &sample, high_water)),
                }
                true
            }
            None => false,
        });
        state.latest = Some(sample);
        state.last_error = None;
    }

    fn note_error(&self, message: String) {
        let mut state = self.lock();
        if state.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!("telemetry sample failed: {message}");
        }
        state.last_error = Some(message);
    }

    fn wake(&self) {
        self.lock().wake = true;
        self.wake.notify_all();
    }
}

/// A running sampler thread; stopped and joined on drop.
pub struct Sampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts polling `telemetry` on its own thread. Each sample also goes to `events` (if given)
    /// until the receiver is dropped — every sample, so up to the job rate while a job runs.
    pub fn spawn(
        mut telemetry: Box<dyn Telemetry>,
        config: SamplerConfig,
        events: Option<UnboundedSender<GpuSample>>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new(telemetry.info().clone(), config));
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("gpu-sampler".into())
            .spawn(move || run(telemetry.as_mut(), &thread_shared, events))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.shared.info
    }

    pub fn latest(&self) -> Option<GpuSample> {
        self.shared.lock().latest.clone()
    }

    /// Samples of the last `config.history`, oldest first, one per `config.interval`.
    pub fn history(&self) -> Vec<GpuSample> {
        self.shared
            .lock()
            .history
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// `memory_used` of [`Self::history`], oldest first: sparkline data.
    pub fn memory_history(&self) -> Vec<u64> {
        self.shared
            .lock()
            .history
            .iter()
            .map(|(_, s)| s.memory_used)
            .collect()
    }

    /// The last sampling error, cleared by the next good sample.
    pub fn last_error(&self) -> Option<String> {
        self.shared.lock().last_error.clone()
    }

    /// A handle for the worker and the bench to open per-job peak windows.
    pub fn peak_tracker(&self) -> PeakTracker {
        PeakTracker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Changes the dashboard rate (the history keeps its length in samples).
    pub fn set_interval(&self, interval: Duration) {
        self.shared.lock().config.interval = interval.max(Duration::from_millis(1));
        self.shared.wake();
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the telemetry sampler thread panicked");
            }
        }
    }
}

fn run(telemetry: &mut dyn Telemetry, shared: &Shared, mut events: Option<UnboundedSender<GpuSample>>) {
    loop {
        let started = Instant::now();
        let pending_reset = {
            let state = shared.lock();
            (state.job_generation > state.reset_generation).then_some(state.job_generation)
        };
        if let Some(generation) = pending_reset {
            telemetry.job_started();
            shared.lock().reset_generation = generation;
        }
        match telemetry.sample() {
            Ok(sample) => {
                shared.record(sample.clone());
                if events.as_ref().is_some_and(|tx| tx.send(sample).is_err()) {
                    events = None; // the receiver is gone; keep sampling for peaks and history
                }
            }
            Err(err) => shared.note_error(err.to_string()),
        }
        let mut state = shared.lock();
        loop {
            if state.stop {
                return;
            }
            if state.wake {
                state.wake = false;
                break;
            }
            let job_running = state.windows.iter().any(|w| w.strong_count() > 0);
            let interval = if job_running {
                state.config.job_interval
            } else {
                state.config.interval
            };
            let elapsed = started.elapsed();
            if elapsed >= interval {
                break;
            }
            state = shared
                .wake
                .wait_timeout(state, interval - elapsed)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Opens per-job peak windows on a [`Sampler`]. Cheap to clone and to send to other threads.
#[derive(Clone)]
pub struct PeakTracker {
    shared: Arc<Shared>,
}

impl PeakTracker {
    /// What the peaks measure.
    pub fn source(&self) -> MemorySource {
        self.shared.info.source
    }

    /// Starts a window at job start: samples immediately (the baseline), then at the job rate
    /// until the window is finished or dropped. Windows are independent; several may be open.
    pub fn start(&self) -> PeakWindow {
        let slot = {
            let mut state = self.shared.lock();
            state.job_generation += 1;
            let slot = Arc::new(Mutex::new((state.job_generation, None)));
            state.windows.push(Arc::downgrade(&slot));
            slot
        };
        self.shared.wake();
        PeakWindow { slot }
    }

    /// Asks for a sample now, recorded in every open window, without resetting the high-water
    /// mark: the bench's final reading when a job has ended.
    pub fn sample_now(&self) {
        self.shared.wake();
    }
}

/// An open peak window; see [`PeakTracker::start`].
pub struct PeakWindow {
    slot: Arc<PeakSlot>,
}

impl PeakWindow {
    /// The peak so far; `None` before the first sample.
    pub fn current(&self) -> Option<PeakMemory> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Closes the window (the sampler returns to the dashboard rate) and returns its peak;
    /// `None` when no sample landed in it (a job shorter than one job interval).
    pub fn finish(self) -> Option<PeakMemory> {
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::super::ScriptedTelemetry;
    use super::*;

    fn info() -> DeviceInfo {
        DeviceInfo {
            name: "Test GPU".into(),
            driver_version: Some("1.0".into()),
            source: MemorySource::DeviceVram,
            unavailable_reason: None,
        }
    }

    fn sample(memory_used: u64) -> GpuSample {
        GpuSample {
            at: Instant::now(),
            memory_used,
            memory_total: Some(1000),
            utilization_percent: Some(50),
            temperature_c: Some(60),
            power_watts: Some(300.0),
            power_limit_watts: Some(700.0),
            process_memory: Some(memory_used / 2),
            memory_high_water: None,
        }
    }

    /// A sampler state without a thread, so samples land exactly where a test puts them.
    fn shared(config: SamplerConfig) -> (Arc<Shared>, PeakTracker) {
        let shared = Arc::new(Shared::new(info(), config));
        let tracker = PeakTracker {
            shared: Arc::clone(&shared),
        };
        (shared, tracker)
    }

    fn at(shared: &Shared, millis: u64, memory_used: u64) -> GpuSample {
        GpuSample {
            at: shared.started + Duration::from_millis(millis),
            ..sample(memory_used)
        }
    }

    fn history(shared: &Shared) -> Vec<u64> {
        shared.lock().history.iter().map(|(_, s)| s.memory_used).collect()
    }

    #[test]
    fn history_is_a_ring_of_the_last_window() {
        let config = SamplerConfig {
            interval: Duration::from_millis(100),
            job_interval: Duration::from_millis(10),
            history: Duration::from_millis(500),
        };
        assert_eq!(config.history_len(), 5);
        let (shared, _) = shared(config);
        for i in 0..8 {
            shared.record(at(&shared, i * 100 + 1, i));
        }
        assert_eq!(history(&shared), vec![3, 4, 5, 6, 7]);
        assert_eq!(shared.lock().latest.as_ref().map(|s| s.memory_used), Some(7));
    }

    #[test]
    fn fast_samples_merge_into_one_history_slot_keeping_the_peak() {
        let config = SamplerConfig {
            interval: Duration::from_millis(100),
            ..SamplerConfig::default()
        };
        let (shared, _) = shared(config);
        for (millis, used) in [(1, 10), (20, 90), (40, 30), (101, 20), (150, 25)] {
            shared.record(at(&shared, millis, used));
        }
        assert_eq!(history(&shared), vec![90, 25]);
        // The latest sample is the last reading, not the slot's peak.
        assert_eq!(shared.lock().latest.as_ref().map(|s| s.memory_used), Some(25));
    }

    #[test]
    fn peak_windows_track_their_own_job() {
        let (shared, tracker) = shared(SamplerConfig::default());
        shared.record(sample(500)); // before any window: not counted
        let first = tracker.start();
        assert_eq!(first.current(), None);
        shared.record(sample(100));
        shared.record(sample(900));
        let second = tracker.start(); // reset for the next job
        shared.record(sample(300));
        let first = first.finish().expect("samples in the first window");
        assert_eq!(
            (first.baseline_used, first.peak_used, first.samples),
            (100, 900, 3)
        );
        assert_eq!(first.last_used, 300);
        assert_eq!(first.peak_process, Some(450));
        assert_eq!(first.memory_total, Some(1000));
        assert_eq!(first.source, MemorySource::DeviceVram);
        shared.record(sample(200));
        let second = second.finish().expect("samples in the second window");
        assert_eq!(
            (second.baseline_used, second.peak_used, second.samples),
            (300, 300, 2)
        );
        // Finished windows are forgotten by the sampler at the next sample.
        shared.record(sample(100));
        assert!(shared.lock().windows.is_empty());
    }

    #[test]
    fn high_water_marks_count_only_after_the_windows_reset() {
        let (shared, tracker) = shared(SamplerConfig::default());
        let window = tracker.start();
        let with_high_water = |used, high| GpuSample {
            memory_high_water: Some(high),
            ..sample(used)
        };
        // Taken before the thread reset the counter: the mark may be an earlier job's peak.
        shared.record(with_high_water(100, 5000));
        assert_eq!(window.current().map(|p| p.peak_used), Some(100));
        shared.lock().reset_generation = 1;
        shared.record(with_high_water(120, 700));
        let peak = window.finish().expect("peak");
        assert_eq!(
            (peak.baseline_used, peak.peak_used, peak.last_used),
            (100, 700, 120)
        );
    }

    #[test]
    fn a_window_without_samples_has_no_peak() {
        let (_shared, tracker) = shared(SamplerConfig::default());
        assert_eq!(tracker.start().finish(), None);
    }

    #[test]
    fn rates_from_hz() {
        let config = SamplerConfig::with_rate(4.0);
        assert_eq!(config.interval, Duration::from_millis(250));
        assert_eq!(config.job_interval, Duration::from_millis(50));
        assert_eq!(
            SamplerConfig::with_rate(100.0).job_interval,
            Duration::from_millis(10)
        );
        assert_eq!(SamplerConfig::with_rate(0.0).interval, Duration::from_secs(10));
        assert_eq!(
            SamplerConfig::with_rate(f64::NAN).interval,
            Duration::from_millis(250)
        );
    }

    /// The thread end to end: events arrive, a window catches the peak between dashboard ticks
    /// (the dashboard interval is an hour, so only the job rate can have sampled it).
    #[test]
    fn sampler_thread_delivers_events_and_catches_job_peaks() {
        let telemetry = ScriptedTelemetry::new(info(), sample(100));
        let feeder = telemetry.feeder();
        let config = SamplerConfig {
            interval: Duration::from_secs(3600),
            job_interval: Duration::from_millis(2),
            history: Duration::from_secs(3600),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sampler = Sampler::spawn(Box::new(telemetry), config, Some(tx)).expect("spawn sampler");
        assert_eq!(sampler.info().name, "Test GPU");
        let first = rx.blocking_recv().expect("first sample");
        assert_eq!(first.memory_used, 100);

        let window = sampler.peak_tracker().start();
        feeder.push([400, 7000, 300, 123]);
        while rx
            .blocking_recv()
            .expect("samples while the window is open")
            .memory_used
            != 123
        {}
        let peak = window.finish().expect("a peak");
        assert_eq!(peak.peak_used, 7000);
        assert!(peak.samples >= 4, "{peak:?}");
        assert_eq!(sampler.latest().map(|s| s.memory_used), Some(123));
        // Samples within the hour-long history slot merged, keeping the peak.
        assert_eq!(sampler.memory_history(), vec![7000]);
        assert_eq!(sampler.last_error(), None);
        drop(sampler); // stops and joins the thread, which closes the channel
        while rx.blocking_recv().is_some() {}
    }
}
