//! The hub's file list saved next to a download (`.zimage-manifest.json` in the model directory),
//! so `models --verify` can check sizes and hashes later without the network.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{FetchError, Result};
use super::hub::Listing;

pub const MANIFEST_FILE: &str = ".zimage-manifest.json";
const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The zimage-tui version that wrote it.
    pub tool: String,
    /// Where the list came from (endpoint URL of the file list).
    pub listing_url: String,
    #[serde(flatten)]
    pub listing: Listing,
}

impl Manifest {
    pub fn new(listing: Listing, listing_url: &str) -> Self {
        Self {
            version: MANIFEST_VERSION,
            tool: format!("zimage-tui {}", crate::VERSION),
            listing_url: listing_url.to_string(),
            listing,
        }
    }

    /// Reads `dir/.zimage-manifest.json`; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(FetchError::io(&path, err)),
        };
        let manifest: Self = serde_json::from_str(&text)
            .map_err(|e| FetchError::Invalid(format!("{}: not a manifest: {e}", path.display())))?;
        for file in &manifest.listing.files {
            super::hub::check_relative_path(&file.path)
                .map_err(|reason| FetchError::Invalid(format!("{}: {reason}", path.display())))?;
        }
        Ok(Some(manifest))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| FetchError::Invalid(e.to_string()))?;
        write_atomically(&dir.join(MANIFEST_FILE), &text)
    }
}

/// Writes `bytes` to a temporary sibling, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = std::path::PathBuf::from(temp);
    let mut file = std::fs::File::create(&temp).map_err(|e| FetchError::io(&temp, e))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| FetchError::io(&temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| FetchError::io(path, e))
}
