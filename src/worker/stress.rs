//! A stress run on the worker thread: the bench `Runner` (the one `zimage-tui bench` uses)
//! driving this worker's own job loop. Its `WorkerPort` runs each submitted job right here and
//! replays the job's events to the runner; the runner's observer turns progress into
//! `Event::Stress` for the caller and answers "stop?" from the worker's command inbox.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::run::{drain, Inbox, Worker};
use super::{Command, Event};
use crate::bench::report::MemorySource;
use crate::bench::stress::{Forwarder, StressEvent, StressRequest, WrittenReport};
use crate::bench::{self, BenchError, MemoryMeter, Runner, WorkerPort};

/// The worker as the runner's engine: `Submit` runs the job synchronously (its events land in
/// the capture channel), `recv` hands them back one by one.
struct InProcessPort<'w> {
    worker: &'w mut Worker,
    captured: UnboundedReceiver<Event>,
}

impl WorkerPort for InProcessPort<'_> {
    fn send(&mut self, command: Command) -> Result<(), BenchError> {
        match command {
            Command::Submit(job) => {
                self.worker.run_job(job);
                Ok(())
            }
            // The model is the one already loaded; the runner never asks for another here.
            Command::LoadModel { .. } | Command::Stress(_) => Err(BenchError::Input(
                "a stress run cannot load models or start another run".into(),
            )),
            Command::Cancel(_) | Command::CancelStress | Command::Shutdown => Ok(()),
        }
    }

    fn recv(&mut self) -> Result<Event, BenchError> {
        // Every job has finished (and sent all its events) before `send` returns, so an empty
        // channel means the runner waits for something that will never come.
        self.captured.try_recv().map_err(|_| BenchError::WorkerGone)
    }
}

impl Worker {
    /// Runs a bench plan on the loaded model; commands that arrive meanwhile are applied (a
    /// `CancelStress` stops it), other work waits in the queue until it is over.
    pub(super) fn run_stress(&mut self, request: StressRequest) {
        let caller = self.events.clone();
        let fail = |message: String| {
            let _ = caller.send(Event::Stress(StressEvent::Failed { message }));
        };
        let (Some(engine), Some((options, load_s))) = (self.engine.as_deref(), self.loaded_with.clone())
        else {
            return fail(format!("no model is loaded ({})", self.no_engine_reason));
        };
        let info = engine.info().clone();
        if let Err(err) = request.plan.validate() {
            return fail(err.to_string());
        }
        let mut meter = match bench::meter::open(&options.device) {
            Ok(meter) => meter,
            Err(err) => return fail(format!("cannot start the memory sampler: {err}")),
        };
        let memory: MemorySource = meter.device().memory_source;
        let _ = caller.send(Event::Stress(StressEvent::Started {
            jobs: request.plan.job_count(),
            memory,
        }));

        {
            let mut inbox = self.inbox.borrow_mut();
            inbox.stress_active = true;
            inbox.stop_stress = false;
        }
        // The jobs' own events go to the runner, not to the caller.
        let (capture, captured) = unbounded_channel();
        let events = std::mem::replace(&mut self.events, capture);
        let inbox = Rc::clone(&self.inbox);
        let result = {
            let mut observer = Forwarder::new(
                |event| {
                    let _ = events.send(Event::Stress(event));
                },
                |message: &str| {
                    let _ = events.send(Event::Log {
                        message: message.to_owned(),
                    });
                },
                || stop_requested(&inbox, &events),
            );
            let mut port = InProcessPort {
                worker: self,
                captured,
            };
            let mut runner = Runner::new(&mut port, &mut meter, &mut observer);
            runner.use_loaded(info, load_s, options.low_vram);
            runner.run(&request.plan)
        };
        self.events = events;
        let stopped = {
            let mut inbox = self.inbox.borrow_mut();
            inbox.stress_active = false;
            std::mem::take(&mut inbox.stop_stress)
        };
        let event = match result {
            Ok(report) => {
                let written = bench::write_report(&request.out_dir, &report)
                    .map(|(markdown, json)| WrittenReport { markdown, json })
                    .map_err(|err| err.to_string());
                StressEvent::Finished {
                    report: Box::new(report),
                    written,
                    stopped,
                }
            }
            Err(err) => StressEvent::Failed {
                message: err.to_string(),
            },
        };
        self.emit(Event::Stress(event));
    }
}

/// Between jobs: applies waiting commands, then says whether the run should end.
fn stop_requested(inbox: &RefCell<Inbox>, events: &UnboundedSender<Event>) -> bool {
    let Ok(mut inbox) = inbox.try_borrow_mut() else {
        // Only while a job runs, which polls the inbox itself.
        return false;
    };
    drain(&mut inbox, events);
    inbox.stop_stress || inbox.shutdown
}

#[cfg(test)]
mod tests {
    //! Stress runs through the real worker thread on the embedded demo model (tiny sizes).
    use std::time::{Duration, Instant};

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::super::{spawn, Event, Job, WorkerHandle};
    use crate::bench::stress::{StressEvent, StressRequest};
    use crate::bench::{Mode, PlanSettings};
    use crate::model::loader::{LoadOptions, ModelSpec};
    use crate::model::GenerationRequest;

    fn demo_worker() -> (WorkerHandle, UnboundedReceiver<Event>) {
        let (tx, mut rx) = unbounded_channel();
        let worker = spawn(tx).expect("worker starts");
        worker.load_model(ModelSpec::Demo, LoadOptions::default());
        loop {
            match rx.blocking_recv() {
                Some(Event::Loaded { .. }) => break,
                Some(Event::LoadFailed { message }) => panic!("demo model failed: {message}"),
                Some(_) => {}
                None => panic!("worker stopped"),
            }
        }
        (worker, rx)
    }

    fn soak(images: usize, interval: Duration, out_dir: &std::path::Path) -> StressRequest {
        let settings = PlanSettings {
            mode: Mode::Soak,
            size: (64, 64),
            steps: 2,
            soak_images: images,
            interval,
            ..PlanSettings::default()
        };
        StressRequest {
            plan: settings.plan().expect("valid plan"),
            out_dir: out_dir.to_owned(),
        }
    }

    /// Collects events until `done` says so (two minutes at most).
    fn collect(rx: &mut UnboundedReceiver<Event>, mut done: impl FnMut(&Event) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut events = Vec::new();
        while Instant::now() < deadline {
            match rx.try_recv() {
                Ok(event) => {
                    let last = done(&event);
                    events.push(event);
                    if last {
                        return events;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        panic!("timed out; events so far: {events:?}");
    }

    fn stress_events(events: &[Event]) -> Vec<&StressEvent> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Stress(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn small_job(id: u64) -> Job {
        Job::new(
            id,
            GenerationRequest {
                prompt: "a cat".into(),
                width: 64,
                height: 64,
                steps: 2,
                seed: 1,
            },
        )
    }

    #[test]
    fn a_soak_reports_every_image_writes_the_report_and_queued_work_waits() {
        let (worker, mut rx) = demo_worker();
        let dir = tempfile::tempdir().unwrap();
        assert!(worker.stress(soak(3, Duration::ZERO, dir.path())));
        // Sent while the run is going: it must wait for the end.
        assert!(worker.submit(small_job(100)));
        let events = collect(&mut rx, |e| matches!(e, Event::Done { job: 100, .. }));

        let stress = stress_events(&events);
        assert!(
            matches!(stress[0], StressEvent::Started { jobs: 4, .. }),
            "{:?}",
            stress[0]
        );
        let finished: Vec<_> = stress
            .iter()
            .filter_map(|e| match e {
                StressEvent::JobFinished { record, .. } => Some(record),
                _ => None,
            })
            .collect();
        assert_eq!(finished.len(), 4, "one warm-up and three images");
        assert!(finished[0].warmup && finished[1..].iter().all(|r| !r.warmup));
        assert!(finished.iter().all(|r| r.outcome.is_ok() && r.total_s.is_some()));
        assert!(stress
            .iter()
            .any(|e| matches!(e, StressEvent::Step { step: 2, total: 2 })));
        let end = events
            .iter()
            .position(|e| matches!(e, Event::Stress(StressEvent::Finished { .. })))
            .expect("the run finished");
        let Event::Stress(StressEvent::Finished {
            report,
            written,
            stopped,
        }) = &events[end]
        else {
            unreachable!()
        };
        assert!(!stopped);
        let written = written.as_ref().expect("report written");
        let md = std::fs::read_to_string(&written.markdown).unwrap();
        assert!(md.contains("## Soak") && md.contains("## Summary"), "{md}");
        assert!(written.json.exists());
        let soak = report.soak.as_ref().expect("soak section");
        assert_eq!((soak.warmup.len(), soak.jobs.len(), soak.stats.ok), (1, 3, 3));
        assert!(soak.stats.used_after_slope_mib_per_image.is_some());
        // The bench jobs' own events stayed with the runner; the queued job ran afterwards.
        let started: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Event::Started { .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(started.len(), 1);
        assert!(started[0] > end);
    }

    #[test]
    fn cancel_stops_the_run_keeps_what_was_measured_and_the_model_stays_loaded() {
        let (worker, mut rx) = demo_worker();
        let dir = tempfile::tempdir().unwrap();
        assert!(worker.stress(soak(50, Duration::from_millis(20), dir.path())));
        let mut measured = 0;
        let events = collect(&mut rx, |e| {
            if let Event::Stress(StressEvent::JobFinished { record, .. }) = e {
                measured += usize::from(!record.warmup);
            }
            matches!(e, Event::Stress(StressEvent::JobFinished { .. })) && measured == 2
        });
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Stress(StressEvent::Waiting { interval }) if *interval == Duration::from_millis(20)
            )),
            "the interval is announced"
        );
        assert!(worker.send(super::Command::CancelStress));
        let events = collect(&mut rx, |e| {
            matches!(
                e,
                Event::Stress(StressEvent::Finished { .. } | StressEvent::Failed { .. })
            )
        });
        let Some(Event::Stress(StressEvent::Finished {
            report,
            written,
            stopped,
        })) = events.last()
        else {
            panic!("{:?}", events.last())
        };
        assert!(stopped);
        assert!(written.is_ok());
        let soak = report.soak.as_ref().unwrap();
        assert!((2..50).contains(&soak.jobs.len()), "{}", soak.jobs.len());
        assert!(soak.stats.failures.is_empty(), "a stop is not a failure");
        // The model is still there for the dashboard's next job.
        assert!(worker.submit(small_job(7)));
        let events = collect(&mut rx, |e| {
            matches!(e, Event::Done { job: 7, .. } | Event::Failed { job: 7, .. })
        });
        assert!(matches!(events.last(), Some(Event::Done { .. })));
    }

    #[test]
    fn without_a_model_the_run_fails_with_the_reason() {
        let (tx, mut rx) = unbounded_channel();
        let worker = spawn(tx).expect("worker starts");
        let dir = tempfile::tempdir().unwrap();
        assert!(worker.stress(soak(2, Duration::ZERO, dir.path())));
        let events = collect(&mut rx, |e| matches!(e, Event::Stress(_)));
        match events.last() {
            Some(Event::Stress(StressEvent::Failed { message })) => {
                assert!(message.contains("no model"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("report.md").exists());
    }
}
