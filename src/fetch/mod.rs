//! Getting the model: download from Hugging Face or ModelScope into the caches the Python
//! clients use (resumable, verified, never a half-written file under its final name), check an
//! existing checkpoint against the hub's recorded sizes and hashes, and the opt-in bf16 cache.
//! No UI here: progress goes to a callback; `cli::fetch` draws it.

pub mod convert;
pub mod env;
pub mod error;
pub mod http;
pub mod hub;
pub mod inspect;
pub mod job;
pub mod layout;
pub mod manifest;
pub mod verify;

use std::path::PathBuf;

pub use error::{FetchError, Result};
pub use http::{HttpClient, RetryPolicy, TransferEvent};
pub use hub::{Hub, Listing, RemoteFile, Source};
pub use layout::Layout;
pub use manifest::Manifest;

use env::EnvLookup;

/// What to fetch and where to.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub source: Source,
    /// Overrides HF_ENDPOINT / MODELSCOPE_DOMAIN.
    pub endpoint: Option<String>,
    /// A plain directory instead of the hub's cache.
    pub dir: Option<PathBuf>,
    /// Branch, tag or commit; default `main` (HF) or `master` (ModelScope).
    pub revision: Option<String>,
    pub repo: String,
}

impl FetchOptions {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            endpoint: None,
            dir: None,
            revision: None,
            repo: env::REPO_ID.to_string(),
        }
    }

    pub fn revision(&self) -> String {
        self.revision.clone().unwrap_or_else(|| match self.source {
            Source::HuggingFace => "main".into(),
            Source::ModelScope => "master".into(),
        })
    }

    pub fn hub(&self, env: EnvLookup) -> Hub {
        let endpoint = self.endpoint.clone().unwrap_or_else(|| match self.source {
            Source::HuggingFace => env::hf_endpoint(env),
            Source::ModelScope => env::modelscope_endpoint(env),
        });
        Hub::new(self.source, &endpoint, &self.repo)
    }

    /// `--dir`, else the source's cache in the layout its Python client writes.
    pub fn layout(&self, env: EnvLookup) -> Layout {
        match (&self.dir, self.source) {
            (Some(dir), _) => Layout::Plain { dir: dir.clone() },
            (None, Source::HuggingFace) => Layout::HfCache {
                repo_root: env::hf_hub_cache(env).join(env::hf_repo_folder(&self.repo)),
            },
            (None, Source::ModelScope) => Layout::Plain {
                dir: env::modelscope_model_dir(env, &self.repo),
            },
        }
    }

    /// The bearer token to send: HF_TOKEN (or the login token file), Hugging Face only.
    pub fn token(&self, env: EnvLookup) -> Option<String> {
        match self.source {
            Source::HuggingFace => env::hf_token(env),
            Source::ModelScope => None,
        }
    }
}

/// Progress of a whole fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchEvent {
    /// The file list is known: `files` to check, of which `missing` (`missing_bytes`) to get.
    Planned {
        model_dir: PathBuf,
        files: usize,
        bytes: u64,
        missing: usize,
        missing_bytes: u64,
    },
    FileStarted {
        path: String,
        size: u64,
    },
    Transfer {
        path: String,
        event: TransferEvent,
    },
    FileDone {
        path: String,
    },
    /// The file list itself is being retried.
    ListingRetry {
        event: TransferEvent,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FetchSummary {
    pub model_dir: PathBuf,
    pub files: usize,
    /// Files that were not already in place.
    pub fetched: usize,
    pub bytes: u64,
}

/// Lists the revision, writes the manifest, and brings every checkpoint file into place.
pub fn fetch(
    options: &FetchOptions,
    client: &HttpClient,
    env: EnvLookup,
    on: &mut dyn FnMut(FetchEvent),
) -> Result<FetchSummary> {
    let hub = options.hub(env);
    let revision = options.revision();
    let listing_url = hub.listing_url(&revision);
    let body = client.get_text(&listing_url, &mut |event| on(FetchEvent::ListingRetry { event }))?;
    let mut listing = hub.parse_listing(&revision, &listing_url, &body)?;
    listing.files.retain(|f| hub::is_checkpoint_file(&f.path));
    if listing.files.is_empty() {
        return Err(FetchError::BadListing {
            url: listing_url,
            reason: format!(
                "no checkpoint files (model_index.json, transformer/, ...) in {}",
                hub.repo
            ),
        });
    }

    let layout = options.layout(env);
    layout.prepare(&listing)?;
    let model_dir = layout.model_dir(&listing)?;
    Manifest::new(listing.clone(), &listing_url).write(&model_dir)?;

    let mut missing = Vec::new();
    for file in &listing.files {
        if !layout.is_present(&listing, file)? && !layout.link_existing_blob(&listing, file)? {
            missing.push(file);
        }
    }
    on(FetchEvent::Planned {
        model_dir: model_dir.clone(),
        files: listing.files.len(),
        bytes: listing.files.iter().map(|f| f.size).sum(),
        missing: missing.len(),
        missing_bytes: missing.iter().map(|f| f.size).sum(),
    });

    let url_revision = listing.commit.clone().unwrap_or_else(|| revision.clone());
    for file in &missing {
        on(FetchEvent::FileStarted {
            path: file.path.clone(),
            size: file.size,
        });
        let part = layout.part_path(&listing, file)?;
        if let Some(parent) = part.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FetchError::io(parent, e))?;
        }
        let url = hub.file_url(&url_revision, &file.path);
        client.download(&url, &part, file, &mut |event| {
            on(FetchEvent::Transfer {
                path: file.path.clone(),
                event,
            })
        })?;
        layout.install(&listing, file, &part)?;
        on(FetchEvent::FileDone {
            path: file.path.clone(),
        });
    }
    layout.finish(&listing)?;
    Ok(FetchSummary {
        model_dir,
        files: listing.files.len(),
        fetched: missing.len(),
        bytes: missing.iter().map(|f| f.size).sum(),
    })
}
