//! The app's queue ↔ the session file's plain data (`crate::session`). Pure conversions, so the
//! round trip is unit-tested; reading and writing files is the session module's job.

use std::path::PathBuf;

use super::action::LoadedSession;
use super::state::{AppState, JobStatus, QueueEntry};
use crate::session::{self, JobError, JobResult, Session, SessionJob, SessionSettings, SESSION_VERSION};

/// The state as a session: the queue with results, the draft's settings, the prompt history.
pub fn to_session(state: &AppState) -> Session {
    Session {
        version: SESSION_VERSION,
        prompt_history: state.draft.history.clone(),
        settings: SessionSettings {
            width: state.draft.width,
            height: state.draft.height,
            steps: state.draft.steps,
            seed: state.draft.seed,
            output_dir: Some(state.settings.output_dir.clone()),
            model: None,
        },
        jobs: state.queue.iter().map(to_session_job).collect(),
    }
}

fn to_session_job(entry: &QueueEntry) -> SessionJob {
    let (status, error) = match &entry.status {
        JobStatus::Queued => (session::JobStatus::Queued, None),
        JobStatus::Running { .. } => (session::JobStatus::Running, None),
        JobStatus::Done { .. } => (session::JobStatus::Done, None),
        JobStatus::Failed { kind, reason } => (
            session::JobStatus::Failed,
            Some(JobError {
                kind: *kind,
                message: reason.clone(),
            }),
        ),
        JobStatus::Cancelled => (session::JobStatus::Cancelled, None),
    };
    let result = match (&entry.status, entry.used_seed, &entry.timings) {
        (JobStatus::Done { .. }, Some(seed), Some(timings)) => Some(JobResult {
            seed,
            timings: timings.clone(),
            peak_vram_bytes: entry.peak_vram_bytes,
            output: entry.output.clone(),
            finished_at: None,
        }),
        _ => None,
    };
    SessionJob {
        id: entry.id,
        prompt: entry.prompt.clone(),
        width: entry.width,
        height: entry.height,
        steps: entry.steps,
        seed: entry.seed,
        status,
        result,
        error,
    }
}

/// A session read from `path`, as the app's types. (`Running` jobs are requeued by the reducer.)
pub fn from_session(session: Session, path: PathBuf) -> LoadedSession {
    let jobs = session.jobs.into_iter().map(from_session_job).collect();
    LoadedSession {
        path,
        jobs,
        prompt_history: session.prompt_history,
        settings: Some(session.settings),
    }
}

fn from_session_job(job: SessionJob) -> QueueEntry {
    let status = match job.status {
        session::JobStatus::Queued | session::JobStatus::Running => JobStatus::Queued,
        session::JobStatus::Done => JobStatus::Done {
            secs: job
                .result
                .as_ref()
                .map_or(0.0, |r| r.timings.total().as_secs_f64()),
        },
        session::JobStatus::Failed => {
            let (kind, reason) = job.error.as_ref().map_or(
                (crate::worker::FailureKind::Internal, "unknown error".to_string()),
                |e| (e.kind, e.message.clone()),
            );
            JobStatus::Failed { kind, reason }
        }
        session::JobStatus::Cancelled => JobStatus::Cancelled,
    };
    QueueEntry {
        id: job.id,
        prompt: job.prompt,
        width: job.width,
        height: job.height,
        steps: job.steps,
        seed: job.seed,
        used_seed: job.result.as_ref().map(|r| r.seed),
        status,
        output: job.result.as_ref().and_then(|r| r.output.clone()),
        timings: job.result.as_ref().map(|r| r.timings.clone()),
        peak_vram_bytes: job.result.as_ref().and_then(|r| r.peak_vram_bytes),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::app::state::{SeedChoice, Settings};
    use crate::model::StageTimings;
    use crate::worker::FailureKind;

    fn entry(id: u64, status: JobStatus) -> QueueEntry {
        QueueEntry {
            id,
            prompt: format!("一只猫 #{id}\nline two"),
            width: 512,
            height: 256,
            steps: 8,
            seed: if id % 2 == 0 {
                SeedChoice::Random
            } else {
                SeedChoice::Fixed(u64::MAX - id)
            },
            used_seed: None,
            status,
            output: None,
            timings: None,
            peak_vram_bytes: None,
        }
    }

    #[test]
    fn the_queue_survives_a_round_trip_through_toml() {
        let mut state = AppState::new(Settings::default(), 1);
        let mut done = entry(1, JobStatus::Done { secs: 0.0 });
        done.used_seed = Some(99);
        done.output = Some(PathBuf::from("out/a.png"));
        done.peak_vram_bytes = Some(1 << 30);
        done.timings = Some(StageTimings {
            encode: Duration::from_millis(250),
            steps: vec![Duration::from_millis(500); 2],
            decode: Duration::from_millis(250),
        });
        state.queue = vec![
            done,
            entry(
                2,
                JobStatus::Failed {
                    kind: FailureKind::OutOfMemory,
                    reason: "out of memory".into(),
                },
            ),
            entry(3, JobStatus::Cancelled),
            entry(4, JobStatus::Queued),
        ];
        state.draft.remember("older prompt");
        let text = to_session(&state).to_toml().expect("encodes");
        let back = Session::from_toml(&text, std::path::Path::new("s.toml")).expect("decodes");
        let loaded = from_session(back, PathBuf::from("s.toml"));
        let mut expected = state.queue.clone();
        expected[0].status = JobStatus::Done { secs: 1.5 };
        assert_eq!(loaded.jobs, expected);
        assert_eq!(loaded.prompt_history, vec!["older prompt"]);
    }

    #[test]
    fn a_running_job_is_saved_as_running_and_comes_back_queued() {
        let mut state = AppState::new(Settings::default(), 1);
        state.queue = vec![entry(5, JobStatus::Running { step: 1, total: 8 })];
        let session = to_session(&state);
        assert_eq!(session.jobs[0].status, session::JobStatus::Running);
        let loaded = from_session(session, PathBuf::from("s.toml"));
        assert_eq!(loaded.jobs[0].status, JobStatus::Queued);
    }
}
