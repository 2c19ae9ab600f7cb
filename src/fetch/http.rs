//! HTTP with retries: small JSON GETs, and file downloads into a partial file that resume with
//! `Range`, hash while writing, and are verified before the caller moves them into place.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use super::error::{FetchError, Result};
use super::hub::RemoteFile;
use super::verify::ContentHasher;

/// How often and how patiently transient failures (connection, 5xx, 429, cut transfers) are
/// retried. The delay doubles after each failure up to `max_delay`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// What a download reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// Bytes of the current file on disk so far (including a resumed prefix).
    Progress { done: u64, total: u64 },
    /// A transient failure; the next attempt starts after `delay`.
    Retrying {
        attempt: u32,
        reason: String,
        delay: Duration,
    },
    /// A partial or downloaded file had the wrong content and was discarded.
    Discarded { reason: String },
}

/// An HTTP client with the bearer token (if any), retry policy and a cancel flag.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    token: Option<String>,
    pub retry: RetryPolicy,
    cancel: Arc<AtomicBool>,
}

/// Failure of one attempt: worth retrying or not.
enum Attempt {
    Transient { reason: String, progressed: bool },
    Fatal(FetchError),
}

const CHUNK: usize = 1 << 20;

impl HttpClient {
    pub fn new(token: Option<String>, retry: RetryPolicy) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The hub redirects small files within itself (auth needed there, as for gated
            // repos) and LFS files to a CDN with a signed URL (no token may leak there).
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(format!("zimage-tui/{}", crate::VERSION))
            .build()
            .into();
        Self {
            agent,
            token,
            retry,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Setting this flag stops transfers at the next chunk (partial files are kept).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn request(
        &self,
        url: &str,
        range_from: u64,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut request = self.agent.get(url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if range_from > 0 {
            request = request.header("Range", format!("bytes={range_from}-"));
        }
        // Byte ranges must address the stored bytes, not a compressed stream.
        request.header("Accept-Encoding", "identity").call()
    }

    fn sleep_before_retry(
        &self,
        failures: u32,
        reason: String,
        on: &mut dyn FnMut(TransferEvent),
    ) -> Result<()> {
        let delay = self.retry.delay(failures);
        on(TransferEvent::Retrying {
            attempt: failures + 1,
            reason,
            delay,
        });
        let deadline = std::time::Instant::now() + delay;
        while std::time::Instant::now() < deadline {
            if self.cancelled() {
                return Err(FetchError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(50).min(delay));
        }
        Ok(())
    }

    /// GET a small text document (a file list), with retries.
    pub fn get_text(&self, url: &str, on: &mut dyn FnMut(TransferEvent)) -> Result<String> {
        let mut failures = 0;
        loop {
            if self.cancelled() {
                return Err(FetchError::Cancelled);
            }
            let outcome = match self.request(url, 0) {
                Err(err) => Attempt::Transient {
                    reason: err.to_string(),
                    progressed: false,
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 200 {
                        let mut body = response.into_body();
                        match body.with_config().limit(64 << 20).read_to_string() {
                            Ok(text) => return Ok(text),
                            Err(err) => Attempt::Transient {
                                reason: err.to_string(),
                                progressed: false,
                            },
                        }
                    } else if is_transient_status(status) {
                        Attempt::Transient {
                            reason: format!("HTTP {status}"),
                            progressed: false,
                        }
                    } else {
                        Attempt::Fatal(FetchError::status(url, status))
                    }
                }
            };
            match outcome {
                Attempt::Fatal(err) => return Err(err),
                Attempt::Transient { reason, .. } => {
                    failures += 1;
                    if failures >= self.retry.attempts {
                        return Err(FetchError::Unreachable {
                            url: url.to_string(),
                            reason,
                        });
                    }
                    self.sleep_before_retry(failures, reason, on)?;
                }
            }
        }
    }

    /// Downloads `file` from `url` into `part`, resuming what `part` already holds, until it has
    /// the expected size and hash. On success `part` is complete, verified and synced; on error it
    /// keeps whatever verified-so-far prefix was received (a re-run resumes from there).
    pub fn download(
        &self,
        url: &str,
        part: &Path,
        file: &RemoteFile,
        on: &mut dyn FnMut(TransferEvent),
    ) -> Result<()> {
        let mut failures = 0;
        let mut refetched_after_mismatch = false;
        let mut ever_connected = false;
        loop {
            if self.cancelled() {
                return Err(FetchError::Cancelled);
            }
            match self.attempt(url, part, file, &mut ever_connected, on) {
                Ok(()) => return Ok(()),
                Err(Attempt::Fatal(FetchError::Mismatch {
                    path,
                    what,
                    expected,
                    actual,
                })) => {
                    remove_if_exists(part)?;
                    on(TransferEvent::Discarded {
                        reason: format!("{what} mismatch, downloading again"),
                    });
                    if refetched_after_mismatch {
                        return Err(FetchError::Mismatch {
                            path,
                            what,
                            expected,
                            actual,
                        });
                    }
                    refetched_after_mismatch = true;
                }
                Err(Attempt::Fatal(err)) => return Err(err),
                Err(Attempt::Transient { reason, progressed }) => {
                    // A transfer that moved forward is not a step towards giving up.
                    failures = if progressed { 1 } else { failures + 1 };
                    if failures >= self.retry.attempts {
                        return Err(if ever_connected {
                            FetchError::Transfer {
                                url: url.to_string(),
                                attempts: failures,
                                reason,
                            }
                        } else {
                            FetchError::Unreachable {
                                url: url.to_string(),
                                reason,
                            }
                        });
                    }
                    self.sleep_before_retry(failures, reason, on)?;
                }
            }
        }
    }

    fn attempt(
        &self,
        url: &str,
        part: &Path,
        file: &RemoteFile,
        ever_connected: &mut bool,
        on: &mut dyn FnMut(TransferEvent),
    ) -> std::result::Result<(), Attempt> {
        let fatal = Attempt::Fatal;
        let mut offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if offset > file.size {
            remove_if_exists(part).map_err(fatal)?;
            on(TransferEvent::Discarded {
                reason: "partial file larger than expected".into(),
            });
            offset = 0;
        }
        let mut hasher = ContentHasher::for_file(file);
        if offset > 0 {
            hasher.update_from_file(part, offset).map_err(fatal)?;
        }
        if offset == file.size {
            return finish(part, file, hasher).map_err(fatal);
        }
        let response = match self.request(url, offset) {
            Ok(response) => response,
            Err(err) => {
                return Err(Attempt::Transient {
                    reason: err.to_string(),
                    progressed: false,
                })
            }
        };
        *ever_connected = true;
        let status = response.status().as_u16();
        let resume_ok = status == 206 && content_range_start(&response) == Some(offset);
        if status == 200 || (status == 206 && !resume_ok) || status == 416 {
            if offset > 0 {
                // The server ignored or refused the range: start the file over.
                remove_if_exists(part).map_err(fatal)?;
                on(TransferEvent::Discarded {
                    reason: format!("server answered HTTP {status} to a resume"),
                });
                if status != 200 {
                    return Err(Attempt::Transient {
                        reason: format!("HTTP {status} to a range request"),
                        progressed: false,
                    });
                }
                offset = 0;
                hasher = ContentHasher::for_file(file);
            } else if status != 200 {
                return Err(Attempt::Fatal(FetchError::status(url, status)));
            }
        } else if status != 206 {
            return Err(if is_transient_status(status) {
                Attempt::Transient {
                    reason: format!("HTTP {status}"),
                    progressed: false,
                }
            } else {
                Attempt::Fatal(FetchError::status(url, status))
            });
        }

        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .map_err(|e| fatal(FetchError::io(part, e)))?;
        if offset == 0 {
            out.set_len(0).map_err(|e| fatal(FetchError::io(part, e)))?;
        }
        let mut out = BufWriter::with_capacity(CHUNK, out);
        let mut reader = response.into_body().into_reader();
        let mut buffer = vec![0u8; CHUNK];
        let start = offset;
        on(TransferEvent::Progress {
            done: offset,
            total: file.size,
        });
        loop {
            if self.cancelled() {
                out.flush().map_err(|e| fatal(FetchError::io(part, e)))?;
                return Err(fatal(FetchError::Cancelled));
            }
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) => {
                    out.flush().map_err(|e| fatal(FetchError::io(part, e)))?;
                    return Err(Attempt::Transient {
                        reason: err.to_string(),
                        progressed: offset > start,
                    });
                }
            };
            if offset + n as u64 > file.size {
                drop(out);
                return Err(fatal(FetchError::Mismatch {
                    path: file.path.clone(),
                    what: "size",
                    expected: file.size.to_string(),
                    actual: format!("more than {}", file.size),
                }));
            }
            out.write_all(&buffer[..n])
                .map_err(|e| fatal(FetchError::io(part, e)))?;
            hasher.update(&buffer[..n]);
            offset += n as u64;
            on(TransferEvent::Progress {
                done: offset,
                total: file.size,
            });
        }
        out.flush().map_err(|e| fatal(FetchError::io(part, e)))?;
        if offset < file.size {
            return Err(Attempt::Transient {
                reason: format!("connection closed after {offset} of {} bytes", file.size),
                progressed: offset > start,
            });
        }
        finish(part, file, hasher).map_err(fatal)
    }
}

/// Compares the finished hash with the expected one and syncs the file to disk.
fn finish(part: &Path, file: &RemoteFile, hasher: ContentHasher) -> Result<()> {
    if let Some((expected, actual)) = hasher.mismatch(file) {
        return Err(FetchError::Mismatch {
            path: file.path.clone(),
            what: "sha256",
            expected,
            actual,
        });
    }
    File::open(part)
        .and_then(|f| f.sync_all())
        .map_err(|e| FetchError::io(part, e))
}

fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// `Content-Range: bytes START-END/TOTAL` → START.
fn content_range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let value = response.headers().get("content-range")?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(FetchError::io(path, err)),
        _ => Ok(()),
    }
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a byte slice, hex (used by tests and the manifest writer).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        assert_eq!(policy.delay(1), Duration::from_millis(100));
        assert_eq!(policy.delay(2), Duration::from_millis(200));
        assert_eq!(policy.delay(3), Duration::from_millis(350));
        assert_eq!(policy.delay(40), Duration::from_millis(350));
    }
}
