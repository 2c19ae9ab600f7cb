//! Errors of fetching and verifying. Each says which URL or file, and what to do where possible.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No TCP connection (refused, DNS, TLS, timeout) after all retries.
    #[error("cannot reach {url}: {reason} (check the address, your network or HF_ENDPOINT / --endpoint)")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}{hint}")]
    Status { url: String, status: u16, hint: String },
    /// The transfer broke off and the retries ran out; the partial file is kept for a re-run.
    #[error("{url}: transfer failed after {attempts} attempts: {reason} (re-run to resume)")]
    Transfer {
        url: String,
        attempts: u32,
        reason: String,
    },
    /// The hub's file list could not be understood.
    #[error("{url}: unexpected file list: {reason}")]
    BadListing { url: String, reason: String },
    /// A downloaded file is not what the hub's metadata says, even after downloading it again.
    #[error("{path}: {what} mismatch: expected {expected}, got {actual}")]
    Mismatch {
        path: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The user asked to stop; partial files are kept.
    #[error("interrupted; partial files are kept, re-run to resume")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn status(url: &str, status: u16) -> Self {
        let hint = match status {
            401 | 403 => " (unauthorised: set HF_TOKEN to a token with access, or check the endpoint)",
            404 => " (not found: check the repository, revision, file name or endpoint)",
            416 => " (range not satisfiable)",
            429 => " (rate limited: wait and re-run)",
            _ => "",
        };
        Self::Status {
            url: url.to_string(),
            status,
            hint: hint.to_string(),
        }
    }
}

pub type Result<T, E = FetchError> = std::result::Result<T, E>;
