//! Where downloaded files go. Two layouts, both readable by the Python clients and our loader:
//! huggingface_hub's cache (content-addressed blobs, a snapshot of relative symlinks per commit,
//! refs naming commits) and a plain directory (ModelScope's cache, or `--dir`).
//! A file only ever appears under its final name by a rename of a complete, verified file.

use std::path::{Path, PathBuf};

use super::error::{FetchError, Result};
use super::hub::{Listing, RemoteFile};

#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// `<hub cache>/models--Owner--Name`, holding `blobs/`, `snapshots/<commit>/`, `refs/`.
    HfCache { repo_root: PathBuf },
    /// Files at their repository paths under `dir`; partial files end in `.part`.
    Plain { dir: PathBuf },
}

fn join_repo_path(base: &Path, path: &str) -> PathBuf {
    path.split('/')
        .fold(base.to_path_buf(), |acc, part| acc.join(part))
}

impl Layout {
    fn commit<'a>(&self, listing: &'a Listing) -> Result<&'a str> {
        listing.commit.as_deref().ok_or_else(|| {
            FetchError::Invalid(
                "the hub did not say which commit the revision is; cannot fill a HF cache".into(),
            )
        })
    }

    fn blob<'a>(&self, file: &'a RemoteFile) -> Result<&'a str> {
        file.hf_blob_name().ok_or_else(|| {
            FetchError::Invalid(format!("{}: the hub gave no hash to name its blob by", file.path))
        })
    }

    /// The directory the loader opens: the snapshot, or the plain directory.
    pub fn model_dir(&self, listing: &Listing) -> Result<PathBuf> {
        match self {
            Layout::HfCache { repo_root } => Ok(repo_root.join("snapshots").join(self.commit(listing)?)),
            Layout::Plain { dir } => Ok(dir.clone()),
        }
    }

    /// The file's path under its final name (a symlink into `blobs/` in the HF cache).
    pub fn final_path(&self, listing: &Listing, file: &RemoteFile) -> Result<PathBuf> {
        Ok(join_repo_path(&self.model_dir(listing)?, &file.path))
    }

    /// Where the download accumulates: `blobs/<hash>.incomplete` (the name huggingface_hub
    /// resumes from too) or `<path>.part`.
    pub fn part_path(&self, listing: &Listing, file: &RemoteFile) -> Result<PathBuf> {
        match self {
            Layout::HfCache { repo_root } => Ok(repo_root
                .join("blobs")
                .join(format!("{}.incomplete", self.blob(file)?))),
            Layout::Plain { .. } => {
                let mut name = self.final_path(listing, file)?.into_os_string();
                name.push(".part");
                Ok(PathBuf::from(name))
            }
        }
    }

    /// Whether the file is already in place with the expected size (its content was verified
    /// before it got its name; `models --verify` re-checks hashes).
    pub fn is_present(&self, listing: &Listing, file: &RemoteFile) -> Result<bool> {
        let path = self.final_path(listing, file)?;
        Ok(std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == file.size))
    }

    /// Moves a complete, verified partial file into place.
    pub fn install(&self, listing: &Listing, file: &RemoteFile, part: &Path) -> Result<()> {
        let final_path = self.final_path(listing, file)?;
        create_parent(&final_path)?;
        match self {
            Layout::Plain { .. } => rename(part, &final_path),
            Layout::HfCache { repo_root } => {
                let blob = repo_root.join("blobs").join(self.blob(file)?);
                rename(part, &blob)?;
                link_snapshot_entry(&final_path, &file.path, self.blob(file)?)
            }
        }
    }

    /// Points an existing blob at a snapshot path (another commit may have fetched it already).
    pub fn link_existing_blob(&self, listing: &Listing, file: &RemoteFile) -> Result<bool> {
        let Layout::HfCache { repo_root } = self else {
            return Ok(false);
        };
        let blob = repo_root.join("blobs").join(self.blob(file)?);
        if !std::fs::metadata(&blob).is_ok_and(|m| m.len() == file.size) {
            return Ok(false);
        }
        let final_path = self.final_path(listing, file)?;
        create_parent(&final_path)?;
        link_snapshot_entry(&final_path, &file.path, self.blob(file)?)?;
        Ok(true)
    }

    /// Creates the directories a fetch writes into.
    pub fn prepare(&self, listing: &Listing) -> Result<()> {
        let dirs = match self {
            Layout::HfCache { repo_root } => {
                vec![repo_root.join("blobs"), self.model_dir(listing)?]
            }
            Layout::Plain { dir } => vec![dir.clone()],
        };
        for dir in dirs {
            std::fs::create_dir_all(&dir).map_err(|e| FetchError::io(&dir, e))?;
        }
        Ok(())
    }

    /// Records which commit a branch or tag named (HF `refs/<revision>`).
    pub fn finish(&self, listing: &Listing) -> Result<()> {
        let Layout::HfCache { repo_root } = self else {
            return Ok(());
        };
        let commit = self.commit(listing)?;
        if listing.revision == commit {
            return Ok(());
        }
        let reference = join_repo_path(&repo_root.join("refs"), &listing.revision);
        create_parent(&reference)?;
        super::manifest::write_atomically(&reference, commit.as_bytes())
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| FetchError::io(parent, e)),
        None => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| FetchError::io(to, e))
}

/// `snapshots/<commit>/a/b.json` → `../../../blobs/<hash>` (relative, as huggingface_hub does).
fn link_snapshot_entry(final_path: &Path, repo_path: &str, blob: &str) -> Result<()> {
    let depth = repo_path.split('/').count() + 1; // the path's directories + the commit dir
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    let target = target.join("blobs").join(blob);
    if std::fs::symlink_metadata(final_path).is_ok() {
        std::fs::remove_file(final_path).map_err(|e| FetchError::io(final_path, e))?;
    }
    symlink(&target, final_path)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(|e| FetchError::io(link, e))
}

/// Without symlinks, the snapshot gets its own copy (huggingface_hub does the same on Windows
/// without developer mode).
#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    let source = link
        .parent()
        .map(|p| p.join(target))
        .unwrap_or_else(|| target.to_path_buf());
    std::fs::copy(&source, link)
        .map(|_| ())
        .map_err(|e| FetchError::io(link, e))
}
