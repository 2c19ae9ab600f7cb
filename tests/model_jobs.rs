//! The dashboard's model jobs end to end, without a terminal: the reducer's effects are carried
//! out by the real `cli::model_tasks` (discovery, `FetchJob`, `VerifyJob` on their own threads)
//! against the loopback fake hub, and every event they send goes back through the reducer, as
//! the event loop does. Checks the events and the state the queue pane and the picker show.

mod fetch_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fetch_support::*;
use zimage_tui::app::models::{
    ModelJobEvent, ModelJobId, ModelJobKind, ModelJobOutcome, ModelJobStatus, ModelsAction, ModelsEffect,
};
use zimage_tui::app::state::{Mode, Pane, Settings};
use zimage_tui::app::{update, Action, AppState, Effect, Intent};
use zimage_tui::cli::model_tasks::{self, ModelTask};
use zimage_tui::fetch::job::SharedEnv;
use zimage_tui::fetch::RetryPolicy;
use zimage_tui::model::loader::{LoadOptions, ModelSpec, SearchPaths};
use zimage_tui::model::pipeline::ModelInfo;
use zimage_tui::worker::Event;

const VAE: &str = "vae/diffusion_pytorch_model.safetensors";
const SHARD: &str = "transformer/diffusion_pytorch_model-00001-of-00002.safetensors";

/// The app plus what the event loop would do with its model effects.
struct Harness {
    state: AppState,
    start: Instant,
    env: SharedEnv,
    paths: SearchPaths,
    tasks: HashMap<ModelJobId, ModelTask>,
    sender: Sender<(ModelJobId, ModelJobEvent)>,
    inbox: Receiver<(ModelJobId, ModelJobEvent)>,
}

impl Harness {
    /// The dashboard on the demo model, downloads going to `cache` from `endpoint`.
    fn new(endpoint: String, cache: &Path) -> Self {
        let env = env_with(&[
            ("HF_ENDPOINT", endpoint),
            ("HF_HUB_CACHE", cache.display().to_string()),
        ]);
        let (sender, inbox) = channel();
        let mut harness = Self {
            state: AppState::new(Settings::default(), 1),
            start: Instant::now(),
            env: Arc::new(env),
            paths: SearchPaths {
                hf_hub: Some(cache.to_path_buf()),
                ..SearchPaths::default()
            },
            tasks: HashMap::new(),
            sender,
            inbox,
        };
        harness.apply(Action::Models(ModelsAction::Load {
            spec: ModelSpec::Demo,
            options: LoadOptions::default(),
        }));
        let info = ModelInfo {
            label: "demo model (random weights)".into(),
            random_weights: true,
            dtype: "f32".into(),
            device: "cpu".into(),
            parameters: vec![],
        };
        harness.apply(Action::Worker {
            event: Event::Loaded { info, secs: 0.1 },
            at: harness.start.elapsed(),
        });
        harness
    }

    fn apply(&mut self, action: Action) {
        let effects = update(&mut self.state, action);
        for effect in effects {
            let Effect::Models(effect) = effect else {
                continue;
            };
            match effect {
                ModelsEffect::Discover { also } => {
                    let found = model_tasks::discover(&self.paths, &*self.env, &also);
                    self.apply(Action::Models(ModelsAction::Found(found)));
                }
                ModelsEffect::Start(request) => {
                    let (sender, id) = (self.sender.clone(), request.id);
                    let retry = RetryPolicy {
                        attempts: 2,
                        first_delay: Duration::from_millis(5),
                        max_delay: Duration::from_millis(10),
                    };
                    let task = model_tasks::start(&request, self.env.clone(), retry, move |event| {
                        let _ = sender.send((id, event));
                    })
                    .expect("start the job");
                    self.tasks.insert(id, task);
                }
                ModelsEffect::Cancel(id) => self.tasks[&id].cancel(),
            }
        }
    }

    fn intent(&mut self, intent: Intent) {
        self.apply(Action::Intent(intent));
    }

    /// Feeds the next job event to the app; returns it.
    fn next_event(&mut self) -> (ModelJobId, ModelJobEvent) {
        let (id, event) = self
            .inbox
            .recv_timeout(Duration::from_secs(30))
            .expect("a job event within 30 s");
        self.apply(Action::Models(ModelsAction::Job {
            id,
            event: event.clone(),
            at: self.start.elapsed(),
        }));
        (id, event)
    }

    /// Feeds events until job `id` finished; returns its events.
    fn run_to_end(&mut self, id: ModelJobId) -> Vec<ModelJobEvent> {
        let mut events = Vec::new();
        loop {
            let (from, event) = self.next_event();
            if from != id {
                continue;
            }
            let last = matches!(event, ModelJobEvent::Finished(_));
            events.push(event);
            if last {
                if let Some(task) = self.tasks.remove(&id) {
                    task.join();
                }
                return events;
            }
        }
    }

    /// Runs the newest job to its end; returns its events.
    fn run_last_job(&mut self) -> Vec<ModelJobEvent> {
        let id = self.last_job().id;
        self.run_to_end(id)
    }

    fn last_job(&self) -> &zimage_tui::app::models::ModelJob {
        self.state.models.jobs.last().expect("a model job")
    }

    /// Why the newest job failed; panics if it did not.
    fn failure_reason(&self) -> &str {
        match &self.last_job().status {
            ModelJobStatus::Failed { reason } => reason,
            other => panic!("{other:?}"),
        }
    }

    fn message(&self) -> String {
        self.state
            .message
            .as_ref()
            .map(|m| m.text.clone())
            .unwrap_or_default()
    }
}

fn snapshot_dir(cache: &Path) -> PathBuf {
    cache
        .join("models--Tongyi-MAI--Z-Image-Turbo")
        .join("snapshots")
        .join(COMMIT)
}

/// The checkpoint files a fetch brings (the fake repo also has a README and images it skips).
fn checkpoint_files() -> Vec<String> {
    fake_checkpoint()
        .into_keys()
        .filter(|name| zimage_tui::fetch::hub::is_checkpoint_file(name))
        .collect()
}

#[test]
fn a_download_then_a_verify_run_as_queue_jobs_and_the_picker_offers_the_result() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let cache = tempfile::tempdir().unwrap();
    let mut app = Harness::new(hub.url(), cache.path());

    // The picker on an empty cache: only the demo model.
    app.intent(Intent::OpenModels);
    assert_eq!(app.state.mode, Mode::Models);
    let specs: Vec<_> = app
        .state
        .models
        .picker
        .candidates
        .iter()
        .map(|c| c.spec.clone())
        .collect();
    assert_eq!(specs, [ModelSpec::Demo]);
    assert_eq!(
        app.state
            .models
            .picker
            .target(zimage_tui::fetch::Source::HuggingFace),
        Some(cache.path().join("models--Tongyi-MAI--Z-Image-Turbo").as_path())
    );

    // f: a download job in the queue pane.
    app.intent(Intent::DownloadModel);
    assert_eq!((app.state.mode, app.state.focus), (Mode::Normal, Pane::Queue));
    let events = app.run_last_job();

    let wanted = checkpoint_files();
    let total: u64 = wanted.iter().map(|f| files[f].len() as u64).sum();
    assert!(
        matches!(&events[0], ModelJobEvent::Planned { files, bytes, present: 0, .. }
            if *files == wanted.len() && *bytes == total),
        "{:?}",
        events[0]
    );
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ModelJobEvent::FileStarted { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, wanted.iter().map(String::as_str).collect::<Vec<_>>());
    let done = events.iter().filter(|e| **e == ModelJobEvent::FileDone).count();
    assert_eq!(done, wanted.len());
    let snapshot = snapshot_dir(cache.path());
    assert!(
        matches!(events.last(), Some(ModelJobEvent::Finished(ModelJobOutcome::Downloaded { dir, fetched, .. }))
            if *dir == snapshot && *fetched == wanted.len()),
        "{:?}",
        events.last()
    );
    assert_checkpoint_files(&snapshot, &files);

    let job = app.last_job();
    assert_eq!(job.status, ModelJobStatus::Done);
    assert_eq!((job.files_done, job.files_total), (wanted.len(), wanted.len()));
    assert_eq!((job.bytes_done(), job.bytes_total), (total, total));
    assert_eq!(job.dir.as_ref(), Some(&snapshot));
    assert!(
        app.message().contains("m, then Enter loads it"),
        "{}",
        app.message()
    );

    // The finish rescanned: the picker lists the new checkpoint, selected.
    app.intent(Intent::OpenModels);
    let picker = &app.state.models.picker;
    let candidate = picker.selected_candidate().expect("a selected entry");
    assert_eq!(candidate.spec, ModelSpec::Dir(snapshot.clone()));
    assert!(candidate.complete, "{:?}", candidate.problem);
    // Its size counts the components' files (model_index.json sits beside them).
    let index_len = files["model_index.json"].len() as u64;
    assert_eq!(candidate.bytes, Some(total - index_len));
    let transformer = candidate.dtypes.iter().find(|(c, _)| c == "transformer");
    // The fake shards: 64×64 + 64 + 96×64 parameters, all F32.
    assert_eq!(
        transformer.map(|(_, d)| d.get("F32").copied()),
        Some(Some(64 * 64 + 64 + 96 * 64))
    );

    // v: verify it against the hub's file list saved by the download.
    app.intent(Intent::VerifyModel);
    let id = app.last_job().id;
    assert_eq!(
        app.last_job().kind,
        ModelJobKind::Verify {
            dir: snapshot.clone()
        }
    );
    let events = app.run_to_end(id);
    assert!(
        matches!(&events[0], ModelJobEvent::Planned { files, bytes, .. } if *files == wanted.len() && *bytes == total),
        "{:?}",
        events[0]
    );
    assert!(
        matches!(events.last(), Some(ModelJobEvent::Finished(ModelJobOutcome::Verified { checked, basis, .. }))
            if *checked == wanted.len() && basis.contains("hub's file list")),
        "{:?}",
        events.last()
    );
    let job = app.last_job();
    assert_eq!(job.status, ModelJobStatus::Done);
    assert_eq!(job.files_done, wanted.len());

    // A flipped byte (same size) is the first bad file of the next verification.
    let vae = snapshot.join(VAE);
    let mut bytes = std::fs::read(&vae).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&vae, &bytes).unwrap();
    app.intent(Intent::OpenModels);
    app.intent(Intent::VerifyModel);
    app.run_last_job();
    let reason = app.failure_reason();
    assert!(reason.contains(VAE) && reason.contains("sha256"), "{reason}");
    assert!(app.message().contains(VAE), "{}", app.message());
}

#[test]
fn a_download_is_cancelled_from_the_queue_and_an_unreachable_hub_fails_clearly() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files);
    // The shard's transfer pauses after its first bytes, long enough to press c.
    hub.with(|s| {
        s.stall_once.insert(SHARD.to_string(), 100);
        s.stall = Duration::from_secs(2);
    });
    let cache = tempfile::tempdir().unwrap();
    let mut app = Harness::new(hub.url(), cache.path());
    app.intent(Intent::OpenModels);
    app.intent(Intent::DownloadModel);
    let id = app.last_job().id;
    loop {
        let (_, event) = app.next_event();
        if matches!(&event, ModelJobEvent::FileStarted { path, .. } if path == SHARD) {
            break;
        }
        assert!(!matches!(event, ModelJobEvent::Finished(_)), "{event:?}");
    }
    // c on the selected row (the download) asks the job to stop.
    assert_eq!(
        zimage_tui::app::models::selected_job(&app.state).map(|j| j.id),
        Some(id)
    );
    app.intent(Intent::CancelJob);
    assert!(app.last_job().cancel_requested);
    let events = app.run_to_end(id);
    assert_eq!(
        events.last(),
        Some(&ModelJobEvent::Finished(ModelJobOutcome::Cancelled))
    );
    assert_eq!(app.last_job().status, ModelJobStatus::Cancelled);
    assert!(app.message().contains("partial files kept"), "{}", app.message());

    // A hub that refuses connections: the job fails and says which address.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let mut app = Harness::new(dead.clone(), cache.path());
    app.intent(Intent::OpenModels);
    app.intent(Intent::DownloadModel);
    app.run_last_job();
    let reason = app.failure_reason();
    assert!(
        reason.contains("cannot reach") && reason.contains(&dead),
        "{reason}"
    );
}

#[test]
fn a_download_into_a_chosen_folder_lands_there_and_the_picker_lists_it() {
    let files = fake_checkpoint();
    let hub = FakeHub::start(files.clone());
    let cache = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let folder = target.path().join("z-image-turbo");
    let mut app = Harness::new(hub.url(), cache.path());
    app.intent(Intent::OpenModels);
    // F: the one-line input, suggesting the hub's cache; replaced by our folder.
    app.intent(Intent::DownloadModelTo);
    app.intent(Intent::ClearLine);
    app.apply(Action::Paste(folder.display().to_string()));
    app.intent(Intent::SubmitLine);
    app.run_last_job();
    assert_eq!(app.last_job().status, ModelJobStatus::Done);
    assert_checkpoint_files(&folder, &files);
    assert!(
        !cache.path().join("models--Tongyi-MAI--Z-Image-Turbo").exists(),
        "nothing went to the cache"
    );

    // Not a place discovery looks, yet the picker lists it (and offers it).
    app.intent(Intent::OpenModels);
    let candidate = app.state.models.picker.selected_candidate().expect("selected");
    assert_eq!(candidate.spec, ModelSpec::Dir(folder.clone()));
    assert_eq!(
        candidate.origin,
        zimage_tui::app::models::CandidateOrigin::Downloaded
    );
    assert!(candidate.complete, "{:?}", candidate.problem);
}
