//! Sessions: the queue (jobs with their results), the settings for new jobs and the prompt
//! history, saved as versioned TOML.
//!
//! Safety rules: a save is atomic (temp file in the same directory, fsync, rename), and a file
//! that is not a valid session of a version this build understands (corrupt, or written by a
//! newer zimage-tui) is refused on load *and* on save — it is never overwritten. A caller that
//! gets such an error should turn autosave off for that path and tell the user.
//!
//! The types are plain data (serde), independent of the UI; the app maps its state to them.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::model::StageTimings;
use crate::worker::FailureKind;

/// The session format this build writes; it reads this version and older ones.
pub const SESSION_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// Format version; see [`SESSION_VERSION`].
    pub version: u32,
    /// Earlier prompts, oldest first, for the editor's history.
    #[serde(default)]
    pub prompt_history: Vec<String>,
    #[serde(default)]
    pub settings: SessionSettings,
    /// The queue, in order.
    #[serde(default)]
    pub jobs: Vec<SessionJob>,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            version: SESSION_VERSION,
            prompt_history: Vec::new(),
            settings: SessionSettings::default(),
            jobs: Vec::new(),
        }
    }
}

/// Settings stored with the queue: the defaults for new jobs and where images go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: SeedChoice,
    /// Where PNGs are written; `None` = the config's output dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// The model the queue was made for, as the config's `model.source` ("demo", a directory…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            width: 1024,
            height: 1024,
            steps: 9,
            seed: SeedChoice::Random,
            output_dir: None,
            model: None,
        }
    }
}

/// A job's seed: drawn at random each time it runs, or fixed.
/// In TOML: `seed = "random"` or `seed = 42` (seeds above i64::MAX are written as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedChoice {
    #[default]
    Random,
    Fixed(u64),
}

/// Where a job is. `Running` is saved as is but loads as `Queued` (the app stopped mid-job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    #[default]
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionJob {
    pub id: u64,
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: SeedChoice,
    #[serde(default)]
    pub status: JobStatus,
    /// The last successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// Why the last run failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResult {
    /// The seed actually used (the drawn one for `SeedChoice::Random`).
    #[serde(with = "seed_number")]
    pub seed: u64,
    pub timings: StageTimings,
    /// Peak device memory during the job (the process's RSS on CPU), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_vram_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PathBuf>,
    /// When the job finished, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobError {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot read session file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{} is not a valid zimage-tui session: {message}. The file is left as it is and will not be overwritten; \
         fix or move it, or use another session file",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{} was written by a newer zimage-tui (session version {found}; this build reads up to {supported}). \
         The file is left as it is and will not be overwritten",
        path.display(),
        supported = SESSION_VERSION
    )]
    NewerVersion { path: PathBuf, found: i64 },
    #[error("cannot write session file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encode the session as TOML: {0}")]
    Encode(String),
}

impl SessionError {
    /// The file does not exist (a fresh session; the first save creates it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SessionError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The file exists but must not be overwritten: turn autosave off for it.
    pub fn protects_file(&self) -> bool {
        matches!(
            self,
            SessionError::Corrupt { .. } | SessionError::NewerVersion { .. }
        )
    }
}

impl Session {
    /// Reads a session. Jobs saved as `running` come back `queued`.
    pub fn load(path: &Path) -> Result<Session, SessionError> {
        let text = fs::read_to_string(path).map_err(|source| match source.kind() {
            io::ErrorKind::InvalidData => SessionError::Corrupt {
                path: path.to_path_buf(),
                message: "the file is not UTF-8 text".into(),
            },
            _ => SessionError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Session::from_toml(&text, path)
    }

    /// Reads a session, or starts an empty one when the file does not exist yet.
    pub fn load_or_new(path: &Path) -> Result<Session, SessionError> {
        match Session::load(path) {
            Err(err) if err.is_not_found() => Ok(Session::default()),
            other => other,
        }
    }

    /// Parses session TOML; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Session, SessionError> {
        let corrupt = |message: String| SessionError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        // The version first, so a newer file is reported as newer rather than as unreadable.
        let table: toml::Table = toml::from_str(text).map_err(|e| corrupt(e.message().to_string()))?;
        let version = match table.get("version") {
            Some(toml::Value::Integer(v)) => *v,
            Some(_) => return Err(corrupt("`version` is not an integer".into())),
            None => return Err(corrupt("there is no `version` key".into())),
        };
        if version > i64::from(SESSION_VERSION) {
            return Err(SessionError::NewerVersion {
                path: path.to_path_buf(),
                found: version,
            });
        }
        if version < 1 {
            return Err(corrupt(format!("unknown session version {version}")));
        }
        let mut session: Session =
            toml::from_str(text).map_err(|e| corrupt(e.to_string().trim_end().to_string()))?;
        for job in &mut session.jobs {
            if job.status == JobStatus::Running {
                job.status = JobStatus::Queued;
            }
        }
        session.version = SESSION_VERSION;
        Ok(session)
    }

    pub fn to_toml(&self) -> Result<String, SessionError> {
        toml::to_string(self).map_err(|e| SessionError::Encode(e.to_string()))
    }

    /// Writes the session atomically, creating the directory if needed. Refuses (with the
    /// load error) when `path` holds a corrupt or newer-version file: that file is never replaced.
    pub fn save(&self, path: &Path) -> Result<(), SessionError> {
        match Session::load(path) {
            Err(err) if err.protects_file() => return Err(err),
            _ => {}
        }
        let text = self.to_toml()?;
        let write_error = |source| SessionError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(write_error)?;
        }
        write_atomic(path, text.as_bytes()).map_err(write_error)
    }

    /// One more than the highest job id: the id for a new job.
    pub fn next_job_id(&self) -> u64 {
        self.jobs.iter().map(|job| job.id + 1).max().unwrap_or(1)
    }
}

/// Replaces `path` with `contents` so that readers (and a crash) see either the old file or the
/// new one: a temp file in the same directory, fsync, rename, fsync of the directory. The temp
/// file is removed on failure.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        // Make the rename itself durable; not all platforms can open a directory.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// u64 as a TOML integer when it fits i64, else as a decimal string (TOML integers are i64).
mod seed_number {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*value) {
            Ok(v) => s.serialize_i64(v),
            Err(_) => s.serialize_str(&value.to_string()),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(v) => {
                u64::try_from(v).map_err(|_| serde::de::Error::custom(format!("seed {v} is negative")))
            }
            Raw::Text(text) => text.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!("seed \"{text}\" is not a number from 0 to 2^64-1"))
            }),
        }
    }
}

impl Serialize for SeedChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SeedChoice::Random => s.serialize_str("random"),
            SeedChoice::Fixed(seed) => seed_number::serialize(seed, s),
        }
    }
}

impl<'de> Deserialize<'de> for SeedChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Text(text) if text.trim().eq_ignore_ascii_case("random") => Ok(SeedChoice::Random),
            Raw::Int(v) => u64::try_from(v)
                .map(SeedChoice::Fixed)
                .map_err(|_| serde::de::Error::custom(format!("seed {v} is negative"))),
            Raw::Text(text) => text.trim().parse().map(SeedChoice::Fixed).map_err(|_| {
                serde::de::Error::custom(format!(
                    "seed \"{text}\" is neither \"random\" nor a number from 0 to 2^64-1"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample_session() -> Session {
        let timings = StageTimings {
            encode: Duration::from_millis(250),
            steps: vec![Duration::from_millis(500); 3],
            decode: Duration::from_millis(125),
        };
        Session {
            version: SESSION_VERSION,
            prompt_history: vec!["a cat".into(), "一只猫在月光下".into()],
            settings: SessionSettings {
                output_dir: Some("out".into()),
                model: Some("demo".into()),
                ..Default::default()
            },
            jobs: vec![
                SessionJob {
                    id: 1,
                    prompt: "一只猫在月光下, \"quoted\"\nsecond line".into(),
                    width: 1024,
                    height: 768,
                    steps: 9,
                    seed: SeedChoice::Fixed(u64::MAX),
                    status: JobStatus::Done,
                    result: Some(JobResult {
                        seed: u64::MAX,
                        timings,
                        peak_vram_bytes: Some(21 << 30),
                        output: Some("out/0001.png".into()),
                        finished_at: Some("2026-11-26T00:00:00Z".into()),
                    }),
                    error: None,
                },
                SessionJob {
                    id: 2,
                    prompt: "a dog".into(),
                    width: 2048,
                    height: 2048,
                    steps: 8,
                    seed: SeedChoice::Random,
                    status: JobStatus::Failed,
                    result: None,
                    error: Some(JobError {
                        kind: FailureKind::OutOfMemory,
                        message: "CUDA out of memory".into(),
                    }),
                },
                SessionJob {
                    id: 7,
                    prompt: "queued".into(),
                    width: 512,
                    height: 512,
                    steps: 4,
                    seed: SeedChoice::Fixed(42),
                    status: JobStatus::Queued,
                    result: None,
                    error: None,
                },
            ],
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/session.toml");
        let session = sample_session();
        session.save(&path).expect("save");
        assert_eq!(Session::load(&path).expect("load"), session);
        // Saving again replaces the file and leaves no temp files behind.
        let mut changed = session.clone();
        changed.jobs.pop();
        changed.save(&path).expect("second save");
        assert_eq!(Session::load(&path).expect("reload"), changed);
        assert_eq!(files_in(&path.with_file_name("")), vec!["session.toml"]);
        assert_eq!(session.next_job_id(), 8);
        assert_eq!(Session::default().next_job_id(), 1);
    }

    #[test]
    fn toml_is_readable() {
        let text = sample_session().to_toml().expect("encode");
        assert!(text.starts_with("version = 1\n"), "{text}");
        assert!(text.contains("seed = \"random\""), "{text}");
        assert!(text.contains("seed = 42"), "{text}");
        assert!(text.contains("seed = \"18446744073709551615\""), "{text}");
        assert!(text.contains("status = \"done\""), "{text}");
        assert!(text.contains("[[jobs]]"), "{text}");
    }

    #[test]
    fn running_jobs_load_as_queued() {
        let mut session = sample_session();
        session.jobs[2].status = JobStatus::Running;
        let text = session.to_toml().expect("encode");
        let loaded = Session::from_toml(&text, Path::new("s.toml")).expect("parse");
        assert_eq!(loaded.jobs[2].status, JobStatus::Queued);
    }

    #[test]
    fn missing_file_is_a_new_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.toml");
        assert!(Session::load(&path).expect_err("missing").is_not_found());
        assert_eq!(Session::load_or_new(&path).expect("new"), Session::default());
    }

    fn assert_refused_and_kept(contents: &[u8], expect_in_message: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.toml");
        fs::write(&path, contents).expect("write");
        let err = Session::load(&path).expect_err("refused");
        assert!(err.protects_file(), "{err}");
        assert!(Session::load_or_new(&path).is_err());
        let message = err.to_string();
        assert!(message.contains(expect_in_message), "{message}");
        assert!(message.contains("will not be overwritten"), "{message}");
        assert!(message.contains("session.toml"), "{message}");
        let save_err = sample_session().save(&path).expect_err("save must refuse");
        assert!(save_err.protects_file(), "{save_err}");
        assert_eq!(fs::read(&path).expect("read back"), contents);
        assert_eq!(files_in(dir.path()), vec!["session.toml"]);
    }

    #[test]
    fn corrupt_files_are_refused_and_never_overwritten() {
        assert_refused_and_kept(b"version = 1\n[[jobs]\nbroken", "not a valid");
        assert_refused_and_kept(b"jobs = []\n", "no `version`");
        assert_refused_and_kept(b"version = \"one\"\n", "not an integer");
        assert_refused_and_kept(b"\xff\xfe binary", "UTF-8");
        assert_refused_and_kept(
            b"version = 1\n[[jobs]]\nid = 1\nprompt = \"x\"\n",
            "missing field",
        );
        assert_refused_and_kept(b"version = 1\n[settings]\nwidht = 512\n", "unknown field `widht`");
        assert_refused_and_kept(
            b"version = 1\n[[jobs]]\nid = 1\nprompt = \"x\"\nwidth = 16\nheight = 16\nsteps = 1\nseed = \"lucky\"\n",
            "neither \"random\"",
        );
    }

    #[test]
    fn newer_versions_are_refused_and_never_overwritten() {
        assert_refused_and_kept(
            b"version = 2\nfuture_key = true\n",
            "newer zimage-tui (session version 2",
        );
    }

    #[test]
    fn write_errors_name_the_path_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A parent that is a file fails for every user, root included.
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, b"").expect("write");
        let err = sample_session()
            .save(&blocker.join("session.toml"))
            .expect_err("cannot write");
        assert!(matches!(err, SessionError::Write { .. }), "{err}");
        assert!(err.to_string().contains("blocker/session.toml"), "{err}");
        assert_eq!(files_in(dir.path()), vec!["blocker"]);
    }

    #[cfg(unix)]
    #[test]
    fn read_only_directory_is_a_clear_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).expect("mkdir");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).expect("chmod");
        // Root ignores directory permissions; there the error cannot happen.
        let writable_anyway = fs::write(locked.join("probe"), b"").is_ok();
        if writable_anyway {
            eprintln!("skipped: running as a user that ignores directory permissions (root)");
            return;
        }
        let path = locked.join("session.toml");
        let err = sample_session().save(&path).expect_err("read-only directory");
        assert!(
            matches!(&err, SessionError::Write { source, .. } if source.kind() == io::ErrorKind::PermissionDenied)
        );
        assert!(err.to_string().contains("locked/session.toml"), "{err}");
        assert!(files_in(&locked).is_empty());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
    }
}
