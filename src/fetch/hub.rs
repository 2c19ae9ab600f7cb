//! The two hubs' HTTP APIs: the file list of a revision (sizes and hashes) and each file's URL.
//!
//! Hugging Face: `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` answers
//! `{"sha": commit, "siblings": [{"rfilename", "size", "blobId", "lfs": {"sha256", "size"}}]}`;
//! files come from `{endpoint}/{repo}/resolve/{commit}/{path}`.
//! ModelScope: `GET {endpoint}/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=true`
//! answers `{"Code": 200, "Data": {"Files": [{"Path", "Type", "Size", "Sha256"}]}}`; files come
//! from `{endpoint}/api/v1/models/{repo}/repo?Revision={rev}&FilePath={path}`.

use serde::{Deserialize, Serialize};

use super::error::{FetchError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    HuggingFace,
    ModelScope,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::HuggingFace => "huggingface",
            Source::ModelScope => "modelscope",
        })
    }
}

/// One file of the remote repository, as the hub describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// Path inside the repository, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lowercase hex sha256 of the content (LFS files on HF; every file on ModelScope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Git blob id (sha1 of `blob {len}\0` + content); HF names small files' blobs by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_oid: Option<String>,
}

impl RemoteFile {
    /// The name huggingface_hub gives this file's blob: the LFS sha256, else the git blob id.
    pub fn hf_blob_name(&self) -> Option<&str> {
        self.sha256.as_deref().or(self.git_oid.as_deref())
    }
}

/// A revision's file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub source: Source,
    pub repo: String,
    /// What the user asked for (branch, tag or commit).
    pub revision: String,
    /// The commit it resolved to, where the hub says (Hugging Face does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub files: Vec<RemoteFile>,
}

/// Top-level entries the pipeline needs; the rest (README, sample images) is not fetched.
const CHECKPOINT_DIRS: [&str; 5] = ["scheduler", "text_encoder", "tokenizer", "transformer", "vae"];

/// Whether a repository file belongs to the checkpoint the loader reads.
pub fn is_checkpoint_file(path: &str) -> bool {
    path == "model_index.json"
        || path
            .split_once('/')
            .is_some_and(|(top, rest)| CHECKPOINT_DIRS.contains(&top) && !rest.is_empty())
}

/// Characters kept as they are in a URL path segment or query value (RFC 3986 unreserved).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && byte == b'/');
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A hub, an endpoint and a repository.
#[derive(Debug, Clone)]
pub struct Hub {
    pub source: Source,
    /// Scheme and host (and optional path prefix), no trailing slash.
    pub endpoint: String,
    pub repo: String,
}

impl Hub {
    pub fn new(source: Source, endpoint: &str, repo: &str) -> Self {
        Self {
            source,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            repo: repo.to_string(),
        }
    }

    pub fn listing_url(&self, revision: &str) -> String {
        match self.source {
            Source::HuggingFace => format!(
                "{}/api/models/{}/revision/{}?blobs=true",
                self.endpoint,
                encode(&self.repo, true),
                encode(revision, false)
            ),
            Source::ModelScope => format!(
                "{}/api/v1/models/{}/repo/files?Revision={}&Recursive=true",
                self.endpoint,
                encode(&self.repo, true),
                encode(revision, false)
            ),
        }
    }

    /// URL of one file; `revision` should be the resolved commit where there is one.
    pub fn file_url(&self, revision: &str, path: &str) -> String {
        match self.source {
            Source::HuggingFace => format!(
                "{}/{}/resolve/{}/{}",
                self.endpoint,
                encode(&self.repo, true),
                encode(revision, false),
                encode(path, true)
            ),
            Source::ModelScope => format!(
                "{}/api/v1/models/{}/repo?Revision={}&FilePath={}",
                self.endpoint,
                encode(&self.repo, true),
                encode(revision, false),
                encode(path, false)
            ),
        }
    }

    /// Parses the listing endpoint's answer; `url` is for error messages.
    pub fn parse_listing(&self, revision: &str, url: &str, body: &str) -> Result<Listing> {
        let bad = |reason: String| FetchError::BadListing {
            url: url.to_string(),
            reason,
        };
        let (commit, files) = match self.source {
            Source::HuggingFace => {
                let info: HfRepoInfo =
                    serde_json::from_str(body).map_err(|e| bad(format!("not the HF repo info JSON: {e}")))?;
                let files = info
                    .siblings
                    .into_iter()
                    .map(|s| {
                        let size = s.lfs.as_ref().map(|l| l.size).or(s.size).ok_or_else(|| {
                            bad(format!(
                                "{} has no size (the API was asked with blobs=true)",
                                s.rfilename
                            ))
                        })?;
                        Ok(RemoteFile {
                            path: s.rfilename,
                            size,
                            sha256: s.lfs.map(|l| l.sha256.to_ascii_lowercase()),
                            git_oid: s.blob_id.map(|b| b.to_ascii_lowercase()),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                (info.sha, files)
            }
            Source::ModelScope => {
                let answer: MsAnswer = serde_json::from_str(body)
                    .map_err(|e| bad(format!("not the ModelScope file list: {e}")))?;
                if answer.code.is_some_and(|c| c != 200) || answer.success == Some(false) {
                    return Err(bad(format!(
                        "ModelScope says: {}",
                        answer.message.unwrap_or_else(|| "error without message".into())
                    )));
                }
                let data = answer.data.ok_or_else(|| bad("no Data field".into()))?;
                let files = data
                    .files
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f.kind != "tree")
                    .map(|f| RemoteFile {
                        path: f.path,
                        size: f.size,
                        sha256: f.sha256.filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase()),
                        git_oid: None,
                    })
                    .collect();
                (None, files)
            }
        };
        for file in &files {
            check_relative_path(&file.path).map_err(&bad)?;
        }
        Ok(Listing {
            source: self.source,
            repo: self.repo.clone(),
            revision: revision.to_string(),
            commit,
            files,
        })
    }
}

/// Refuses paths that would land outside the destination (`..`, absolute, empty parts).
pub fn check_relative_path(path: &str) -> std::result::Result<(), String> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(format!("refusing unsafe file path {path:?}"))
    }
}

#[derive(Deserialize)]
struct HfRepoInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<HfSibling>,
}

#[derive(Deserialize)]
struct HfSibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<HfLfs>,
}

#[derive(Deserialize)]
struct HfLfs {
    sha256: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MsAnswer {
    code: Option<i64>,
    success: Option<bool>,
    message: Option<String>,
    data: Option<MsData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MsData {
    files: Option<Vec<MsFile>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MsFile {
    path: String,
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(default)]
    size: u64,
    sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_match_the_python_clients() {
        let hf = Hub::new(
            Source::HuggingFace,
            "https://huggingface.co/",
            "Tongyi-MAI/Z-Image-Turbo",
        );
        assert_eq!(
            hf.listing_url("main"),
            "https://huggingface.co/api/models/Tongyi-MAI/Z-Image-Turbo/revision/main?blobs=true"
        );
        assert_eq!(
            hf.file_url("refs/pr/1", "transformer/a b.json"),
            "https://huggingface.co/Tongyi-MAI/Z-Image-Turbo/resolve/refs%2Fpr%2F1/transformer/a%20b.json"
        );
        let ms = Hub::new(
            Source::ModelScope,
            "https://www.modelscope.cn",
            "Tongyi-MAI/Z-Image-Turbo",
        );
        assert_eq!(
            ms.file_url("master", "vae/config.json"),
            "https://www.modelscope.cn/api/v1/models/Tongyi-MAI/Z-Image-Turbo/repo?Revision=master&FilePath=vae%2Fconfig.json"
        );
    }

    #[test]
    fn parses_hf_revision_info() {
        let hf = Hub::new(Source::HuggingFace, "http://x", "o/r");
        let body = r#"{"id":"o/r","sha":"abc123","siblings":[
            {"rfilename":"model_index.json","size":10,"blobId":"AA11"},
            {"rfilename":"vae/w.safetensors","size":20,"blobId":"bb",
             "lfs":{"sha256":"CC","size":20,"pointerSize":134}}]}"#;
        let listing = hf.parse_listing("main", "u", body).unwrap();
        assert_eq!(listing.commit.as_deref(), Some("abc123"));
        assert_eq!(listing.files[0].hf_blob_name(), Some("aa11"));
        assert_eq!(listing.files[1].hf_blob_name(), Some("cc"));
        assert_eq!(listing.files[1].size, 20);
    }

    #[test]
    fn parses_modelscope_files_and_errors() {
        let ms = Hub::new(Source::ModelScope, "http://x", "o/r");
        let body = r#"{"Code":200,"Success":true,"Data":{"Files":[
            {"Name":"vae","Path":"vae","Type":"tree","Size":0,"Sha256":""},
            {"Name":"config.json","Path":"vae/config.json","Type":"blob","Size":5,"Sha256":"AB"}]}}"#;
        let listing = ms.parse_listing("master", "u", body).unwrap();
        assert_eq!(listing.files.len(), 1);
        assert_eq!(listing.files[0].sha256.as_deref(), Some("ab"));
        let err = ms.parse_listing("master", "u", r#"{"Code":10010205,"Message":"model not found"}"#);
        assert!(err.unwrap_err().to_string().contains("model not found"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let hf = Hub::new(Source::HuggingFace, "http://x", "o/r");
        let body = r#"{"sha":"c","siblings":[{"rfilename":"../evil","size":1}]}"#;
        assert!(hf.parse_listing("main", "u", body).is_err());
        assert!(check_relative_path("a/./b").is_err());
        assert!(check_relative_path("/abs").is_err());
        assert!(check_relative_path("vae/config.json").is_ok());
    }

    #[test]
    fn only_pipeline_files_are_fetched() {
        assert!(is_checkpoint_file("model_index.json"));
        assert!(is_checkpoint_file(
            "transformer/diffusion_pytorch_model-00001-of-00003.safetensors"
        ));
        assert!(!is_checkpoint_file("assets/showcase.jpg"));
        assert!(!is_checkpoint_file("README.md"));
        assert!(!is_checkpoint_file("vae/"));
    }
}
