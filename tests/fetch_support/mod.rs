//! A fake Hugging Face / ModelScope hub on 127.0.0.1 for the fetch tests: a hand-written
//! HTTP/1.1 server (one thread per connection, `Connection: close`) serving a tiny checkpoint
//! through the same endpoints and JSON shapes as the real hubs, with `Range` → 206, and knobs to
//! cut a transfer, corrupt a file, require a token, and log every request.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const REPO: &str = "Tongyi-MAI/Z-Image-Turbo";
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Files whose next transfer stops after this many body bytes (then the connection closes).
    pub cut_once: HashMap<String, usize>,
    /// Files whose next transfer pauses after this many body bytes for `stall` (then goes on).
    pub stall_once: HashMap<String, usize>,
    pub stall: std::time::Duration,
    /// Files served with one byte flipped, always.
    pub corrupt: Vec<String>,
    /// Files whose next transfer is served with one byte flipped.
    pub corrupt_once: Vec<String>,
    /// Files the listing shows but the file endpoint answers 404 for.
    pub missing: Vec<String>,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub log: Vec<Logged>,
}

pub struct FakeHub {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State {
            files,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &state);
                    });
                }
            })
        };
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn log(&self) -> Vec<Logged> {
        self.with(|s| s.log.clone())
    }

    /// Requests that were served one repository file's content (either hub's URL form; HF
    /// `resolve` redirects are not counted, their targets are).
    pub fn file_requests(&self, file: &str) -> Vec<Logged> {
        let encoded = file.replace('/', "%2F");
        self.log()
            .into_iter()
            .filter(|l| !l.path.contains("/resolve/"))
            .filter(|l| {
                let path = l.path.split('?').next().unwrap_or_default();
                path.ends_with(&format!("/{file}")) || l.path.ends_with(&format!("FilePath={encoded}"))
            })
            .collect()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn git_oid(bytes: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Like the HF `.gitattributes`: safetensors (and big files) are LFS, small text is plain git.
fn is_lfs(path: &str) -> bool {
    path.ends_with(".safetensors") || path.ends_with(".jpg")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut st = state.lock().unwrap();
    st.log.push(Logged {
        path: target.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    });
    // The CDN's signed URLs need no token (and must not receive one).
    if let Some(token) = st.token.as_ref().filter(|_| !path.starts_with("/cdn/")) {
        if headers.get("authorization") != Some(&format!("Bearer {token}")) {
            drop(st);
            return respond(
                &mut stream,
                "401 Unauthorized",
                &[],
                b"{\"error\":\"Invalid credentials\"}",
            );
        }
    }
    let json = |v: serde_json::Value| {
        (
            vec![("Content-Type".to_string(), "application/json".to_string())],
            v.to_string().into_bytes(),
        )
    };

    // Hugging Face: repo info with blobs.
    if let Some(rest) = path.strip_prefix(&format!("/api/models/{REPO}/revision/")) {
        if rest != "main" && rest != COMMIT {
            drop(st);
            return respond(
                &mut stream,
                "404 Not Found",
                &[],
                b"{\"error\":\"Invalid rev id\"}",
            );
        }
        let siblings: Vec<serde_json::Value> = st
            .files
            .iter()
            .map(|(name, data)| {
                let mut s = serde_json::json!({"rfilename": name, "size": data.len(), "blobId": git_oid(data)});
                if is_lfs(name) {
                    s["lfs"] = serde_json::json!({"sha256": sha256_hex(data), "size": data.len(), "pointerSize": 134});
                }
                s
            })
            .collect();
        let (h, body) = json(serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings}));
        drop(st);
        return respond(&mut stream, "200 OK", &h, &body);
    }
    // ModelScope: file list.
    if path == format!("/api/v1/models/{REPO}/repo/files") {
        let mut files: Vec<serde_json::Value> = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for (name, data) in &st.files {
            if let Some((dir, _)) = name.rsplit_once('/') {
                dirs.insert(dir.to_string());
            }
            files.push(
                serde_json::json!({"Name": name.rsplit('/').next(), "Path": name, "Type": "blob",
                "Size": data.len(), "Sha256": sha256_hex(data), "Revision": COMMIT, "IsLFS": is_lfs(name)}),
            );
        }
        for dir in dirs {
            files
                .push(serde_json::json!({"Name": dir, "Path": dir, "Type": "tree", "Size": 0, "Sha256": ""}));
        }
        let (h, body) = json(serde_json::json!({"Code": 200, "Success": true, "Data": {"Files": files}}));
        drop(st);
        return respond(&mut stream, "200 OK", &h, &body);
    }
    // Like huggingface.co: `resolve` redirects LFS files to a CDN (signed URL) and small files
    // to `api/resolve-cache` on the same host.
    if let Some(rest) = path.strip_prefix(&format!("/{REPO}/resolve/")) {
        let Some((_, file)) = rest.split_once('/') else {
            drop(st);
            return respond(&mut stream, "404 Not Found", &[], b"Entry not found");
        };
        let file = percent_decode(file);
        let location = if is_lfs(&file) {
            let sha = st.files.get(&file).map(|d| sha256_hex(d)).unwrap_or_default();
            format!("/cdn/{sha}/{file}?X-Amz-Signature=abc")
        } else {
            format!("/api/resolve-cache/models/{REPO}/{COMMIT}/{file}")
        };
        drop(st);
        return respond(&mut stream, "302 Found", &[("Location".into(), location)], b"");
    }
    let file = if let Some(rest) = path.strip_prefix("/cdn/") {
        rest.split_once('/').map(|(_, f)| percent_decode(f))
    } else if let Some(rest) = path.strip_prefix(&format!("/api/resolve-cache/models/{REPO}/{COMMIT}/")) {
        Some(percent_decode(rest))
    } else if path == format!("/api/v1/models/{REPO}/repo") {
        query_param(query, "FilePath")
    } else {
        None
    };
    let Some(file) = file else {
        drop(st);
        return respond(&mut stream, "404 Not Found", &[], b"Repository not found");
    };
    let Some(mut data) = st
        .files
        .get(&file)
        .cloned()
        .filter(|_| !st.missing.contains(&file))
    else {
        drop(st);
        return respond(&mut stream, "404 Not Found", &[], b"Entry not found");
    };
    let corrupt_once = st.corrupt_once.iter().position(|f| f == &file);
    if st.corrupt.contains(&file) || corrupt_once.is_some() {
        let last = data.len() - 1;
        data[last] ^= 0xff;
    }
    if let Some(i) = corrupt_once {
        st.corrupt_once.remove(i);
    }
    let cut = st.cut_once.remove(&file);
    let stall = st.stall_once.remove(&file).map(|n| (n, st.stall));
    drop(st);

    let start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
    let (status, body, extra) = match start {
        Some(s) if s >= data.len() => {
            return respond(
                &mut stream,
                "416 Range Not Satisfiable",
                &[("Content-Range".into(), format!("bytes */{}", data.len()))],
                b"",
            );
        }
        Some(s) => (
            "206 Partial Content",
            data[s..].to_vec(),
            vec![(
                "Content-Range".to_string(),
                format!("bytes {s}-{}/{}", data.len() - 1, data.len()),
            )],
        ),
        None => ("200 OK", data.clone(), vec![]),
    };
    let mut headers_out = extra;
    headers_out.push(("Accept-Ranges".into(), "bytes".into()));
    headers_out.push(("ETag".into(), format!("\"{}\"", sha256_hex(&data))));
    match cut {
        Some(n) if n < body.len() => {
            write_head(&mut stream, status, body.len(), &headers_out)?;
            stream.write_all(&body[..n])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)
        }
        _ => match stall {
            Some((n, pause)) if n < body.len() => {
                write_head(&mut stream, status, body.len(), &headers_out)?;
                stream.write_all(&body[..n])?;
                stream.flush()?;
                std::thread::sleep(pause);
                stream.write_all(&body[n..])?;
                stream.flush()
            }
            _ => respond(&mut stream, status, &headers_out, &body),
        },
    }
}

/// Status line and headers announcing `len` body bytes (the body may then be cut or paused).
fn write_head(
    stream: &mut TcpStream,
    status: &str,
    len: usize,
    headers: &[(String, String)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {len}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A safetensors file with F32 tensors of the given names and shapes, filled with `noise`.
pub fn safetensors_f32(tensors: &[(&str, Vec<usize>)], seed: u64) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n: usize = shape.iter().product();
            let values: Vec<u8> = noise(seed + i as u64, n)
                .iter()
                .flat_map(|b| ((*b as f32 - 128.0) / 37.0).to_le_bytes())
                .collect();
            (name.to_string(), shape.clone(), values)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

/// A tiny checkpoint in the diffusers layout, plus the files a fetch must skip.
pub fn fake_checkpoint() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut put = |name: &str, data: Vec<u8>| {
        files.insert(name.to_string(), data);
    };
    put(
        "model_index.json",
        br#"{"_class_name":"ZImagePipeline"}"#.to_vec(),
    );
    put("README.md", b"# fake\n".to_vec());
    put("assets/showcase.jpg", noise(99, 5000));
    put("scheduler/scheduler_config.json", br#"{"shift":3.0}"#.to_vec());
    put("tokenizer/tokenizer.json", br#"{"model":{}}"#.to_vec());
    put("text_encoder/config.json", b"{}".to_vec());
    put(
        "text_encoder/model.safetensors",
        safetensors_f32(&[("embed.weight", vec![16, 8])], 1),
    );
    put("transformer/config.json", b"{}".to_vec());
    let shard1 = safetensors_f32(&[("a.weight", vec![64, 64]), ("a.bias", vec![64])], 2);
    let shard2 = safetensors_f32(&[("b.weight", vec![96, 64])], 3);
    put(
        "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
        shard1,
    );
    put(
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        shard2,
    );
    put(
        "transformer/diffusion_pytorch_model.safetensors.index.json",
        serde_json::json!({"metadata": {}, "weight_map": {
            "a.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "a.bias": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "b.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}})
        .to_string()
        .into_bytes(),
    );
    put("vae/config.json", b"{}".to_vec());
    put(
        "vae/diffusion_pytorch_model.safetensors",
        safetensors_f32(&[("decoder.conv_in.weight", vec![8, 4, 3, 3])], 4),
    );
    files
}

/// An environment for the library calls: only these variables exist.
pub fn env_with(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name: &str| map.get(name).cloned()
}

/// Every checkpoint file of the fake repo is at `dir` with the served bytes.
pub fn assert_checkpoint_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, data) in files {
        let path = dir.join(name);
        let wanted = zimage_tui::fetch::hub::is_checkpoint_file(name);
        if wanted {
            let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(&got, data, "{name} differs");
        } else {
            assert!(!path.exists(), "{name} should not have been fetched");
        }
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}
