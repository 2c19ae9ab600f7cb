//! Content checks: the hash the hub records for a file (sha256 for LFS files and everything on
//! ModelScope, the git blob id for small files on Hugging Face), computed while streaming.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::{FetchError, Result};
use super::http::hex;
use super::hub::RemoteFile;

/// Hashes content the way the hub identifies the file.
pub enum ContentHasher {
    Sha256(Sha256),
    /// Git's blob id: sha1 of `blob {len}\0` followed by the content.
    GitBlob(Sha1),
    /// The hub recorded no hash; only the size can be checked.
    SizeOnly,
}

impl ContentHasher {
    pub fn for_file(file: &RemoteFile) -> Self {
        if file.sha256.is_some() {
            Self::Sha256(Sha256::new())
        } else if file.git_oid.is_some() {
            let mut sha1 = Sha1::new();
            sha1.update(format!("blob {}\0", file.size).as_bytes());
            Self::GitBlob(sha1)
        } else {
            Self::SizeOnly
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::GitBlob(h) => h.update(bytes),
            Self::SizeOnly => {}
        }
    }

    /// Feeds the first `len` bytes of `path`.
    pub fn update_from_file(&mut self, path: &Path, len: u64) -> Result<()> {
        self.update_from_file_reporting(path, len, &mut |_| {})
    }

    /// Like `update_from_file`, telling `on_bytes` how far it got after each chunk.
    pub fn update_from_file_reporting(
        &mut self,
        path: &Path,
        len: u64,
        on_bytes: &mut dyn FnMut(u64),
    ) -> Result<()> {
        self.update_from_file_until(path, len, on_bytes, &|| false)
    }

    /// Like `update_from_file_reporting`, ending with `FetchError::Cancelled` as soon as `stop`
    /// says so (checked before each chunk).
    pub fn update_from_file_until(
        &mut self,
        path: &Path,
        len: u64,
        on_bytes: &mut dyn FnMut(u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        if matches!(self, Self::SizeOnly) {
            on_bytes(len);
            return Ok(());
        }
        let file = File::open(path).map_err(|e| FetchError::io(path, e))?;
        let mut reader = file.take(len);
        let mut buffer = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            if stop() {
                return Err(FetchError::Cancelled);
            }
            let n = reader.read(&mut buffer).map_err(|e| FetchError::io(path, e))?;
            if n == 0 {
                return Ok(());
            }
            self.update(&buffer[..n]);
            done += n as u64;
            on_bytes(done);
        }
    }

    /// `Some((expected, actual))` when the content is not the one the hub described.
    pub fn mismatch(self, file: &RemoteFile) -> Option<(String, String)> {
        let (expected, actual) = match self {
            Self::Sha256(h) => (file.sha256.clone()?, hex(&h.finalize())),
            Self::GitBlob(h) => (file.git_oid.clone()?, hex(&h.finalize())),
            Self::SizeOnly => return None,
        };
        (expected != actual).then_some((expected, actual))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha256",
            Self::GitBlob(_) => "git blob id",
            Self::SizeOnly => "size",
        }
    }
}

/// Checks one file on disk against its description: size first (cheap), then the hash.
pub fn check_file(path: &Path, file: &RemoteFile) -> Result<()> {
    check_file_reporting(path, file, &mut |_| {})
}

/// `check_file`, telling `on_bytes` how many bytes of this file were hashed so far.
pub fn check_file_reporting(path: &Path, file: &RemoteFile, on_bytes: &mut dyn FnMut(u64)) -> Result<()> {
    check_file_until(path, file, on_bytes, &|| false)
}

/// `check_file_reporting` that stops with `FetchError::Cancelled` when `stop` says so.
pub fn check_file_until(
    path: &Path,
    file: &RemoteFile,
    on_bytes: &mut dyn FnMut(u64),
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| FetchError::io(path, e))?
        .len();
    if size != file.size {
        return Err(FetchError::Mismatch {
            path: file.path.clone(),
            what: "size",
            expected: file.size.to_string(),
            actual: size.to_string(),
        });
    }
    let mut hasher = ContentHasher::for_file(file);
    let what = hasher.kind();
    hasher.update_from_file_until(path, size, on_bytes, stop)?;
    match hasher.mismatch(file) {
        Some((expected, actual)) => Err(FetchError::Mismatch {
            path: file.path.clone(),
            what,
            expected,
            actual,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let file = RemoteFile {
            path: "x".into(),
            size: 6,
            sha256: None,
            git_oid: Some("ce013625030ba8dba906f756967f9e9ca394464a".into()),
        };
        let mut hasher = ContentHasher::for_file(&file);
        hasher.update(b"hello\n");
        assert_eq!(hasher.mismatch(&file), None);
    }

    #[test]
    fn sha256_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let good = RemoteFile {
            path: "f".into(),
            size: 3,
            sha256: Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()),
            git_oid: None,
        };
        check_file(&path, &good).unwrap();
        let mut bad = good.clone();
        bad.sha256 = Some("00".repeat(32));
        assert!(matches!(
            check_file(&path, &bad),
            Err(FetchError::Mismatch { what: "sha256", .. })
        ));
        bad.size = 4;
        assert!(matches!(
            check_file(&path, &bad),
            Err(FetchError::Mismatch { what: "size", .. })
        ));
    }
}
