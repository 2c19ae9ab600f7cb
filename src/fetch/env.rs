//! Where the Python clients put things, read from the environment the way they read it:
//! huggingface_hub (HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_TOKEN_PATH) and modelscope
//! (MODELSCOPE_CACHE, MODELSCOPE_DOMAIN). Every function takes the variable lookup as an argument
//! so tests can pass their own environment instead of mutating the process's.

use std::path::PathBuf;

/// The repository this tool is about, on both hubs.
pub const REPO_ID: &str = "Tongyi-MAI/Z-Image-Turbo";
pub const HF_DEFAULT_ENDPOINT: &str = "https://huggingface.co";
pub const MODELSCOPE_DEFAULT_DOMAIN: &str = "www.modelscope.cn";

/// Reads one environment variable; empty values count as unset (as the Python clients do).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn get(env: EnvLookup, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

fn home(env: EnvLookup) -> PathBuf {
    get(env, "HOME")
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `~` at the start of a path, expanded like Python's `os.path.expanduser`.
fn expand_user(env: EnvLookup, value: &str) -> PathBuf {
    match value.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            home(env).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(value),
    }
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home(env: EnvLookup) -> PathBuf {
    if let Some(dir) = get(env, "HF_HOME") {
        return expand_user(env, &dir);
    }
    let cache = get(env, "XDG_CACHE_HOME")
        .map(|d| expand_user(env, &d))
        .unwrap_or_else(|| home(env).join(".cache"));
    cache.join("huggingface")
}

/// The hub cache: `$HF_HUB_CACHE` (or the older `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`.
pub fn hf_hub_cache(env: EnvLookup) -> PathBuf {
    get(env, "HF_HUB_CACHE")
        .or_else(|| get(env, "HUGGINGFACE_HUB_CACHE"))
        .map(|d| expand_user(env, &d))
        .unwrap_or_else(|| hf_home(env).join("hub"))
}

/// `models--Owner--Name` inside the hub cache.
pub fn hf_repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// `$HF_ENDPOINT` without a trailing slash, else huggingface.co.
pub fn hf_endpoint(env: EnvLookup) -> String {
    get(env, "HF_ENDPOINT")
        .unwrap_or_else(|| HF_DEFAULT_ENDPOINT.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// `$HF_TOKEN` (or the older `$HUGGING_FACE_HUB_TOKEN`), else the file `huggingface-cli login`
/// writes: `$HF_TOKEN_PATH`, default `$HF_HOME/token`.
pub fn hf_token(env: EnvLookup) -> Option<String> {
    if let Some(token) = get(env, "HF_TOKEN").or_else(|| get(env, "HUGGING_FACE_HUB_TOKEN")) {
        return Some(token.trim().to_string());
    }
    let path = get(env, "HF_TOKEN_PATH")
        .map(|p| expand_user(env, &p))
        .unwrap_or_else(|| hf_home(env).join("token"));
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// The ModelScope cache root: `$MODELSCOPE_CACHE`, else `~/.cache/modelscope/hub`.
pub fn modelscope_cache(env: EnvLookup) -> PathBuf {
    get(env, "MODELSCOPE_CACHE")
        .map(|d| expand_user(env, &d))
        .unwrap_or_else(|| home(env).join(".cache").join("modelscope").join("hub"))
}

/// Where modelscope ≥ 1.2x puts a model: `<cache>/models/<owner>/<name>`, dots in the name
/// written as `___`.
pub fn modelscope_model_dir(env: EnvLookup, repo: &str) -> PathBuf {
    let (owner, name) = repo.split_once('/').unwrap_or(("", repo));
    modelscope_cache(env)
        .join("models")
        .join(owner)
        .join(name.replace('.', "___"))
}

/// `https://` + `$MODELSCOPE_DOMAIN` (a value with a scheme is taken as is).
pub fn modelscope_endpoint(env: EnvLookup) -> String {
    let domain = get(env, "MODELSCOPE_DOMAIN").unwrap_or_else(|| MODELSCOPE_DEFAULT_DOMAIN.into());
    let domain = domain.trim_end_matches('/');
    if domain.starts_with("http://") || domain.starts_with("https://") {
        domain.to_string()
    } else {
        format!("https://{domain}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn hf_paths_follow_huggingface_hub_precedence() {
        let env = env_of(&[("HOME", "/h")]);
        assert_eq!(hf_hub_cache(&env), PathBuf::from("/h/.cache/huggingface/hub"));
        let env = env_of(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]);
        assert_eq!(hf_hub_cache(&env), PathBuf::from("/x/huggingface/hub"));
        let env = env_of(&[("HOME", "/h"), ("HF_HOME", "~/hf")]);
        assert_eq!(hf_hub_cache(&env), PathBuf::from("/h/hf/hub"));
        let env = env_of(&[("HOME", "/h"), ("HF_HOME", "/a"), ("HF_HUB_CACHE", "/b")]);
        assert_eq!(hf_hub_cache(&env), PathBuf::from("/b"));
        assert_eq!(hf_repo_folder(REPO_ID), "models--Tongyi-MAI--Z-Image-Turbo");
    }

    #[test]
    fn endpoints_and_tokens() {
        let env = env_of(&[("HF_ENDPOINT", "https://hf-mirror.com/"), ("HF_TOKEN", " t1 ")]);
        assert_eq!(hf_endpoint(&env), "https://hf-mirror.com");
        assert_eq!(hf_token(&env).as_deref(), Some("t1"));
        let env = env_of(&[("HF_ENDPOINT", "")]);
        assert_eq!(hf_endpoint(&env), HF_DEFAULT_ENDPOINT);
        assert_eq!(modelscope_endpoint(&env), "https://www.modelscope.cn");
        let env = env_of(&[("MODELSCOPE_DOMAIN", "http://127.0.0.1:9")]);
        assert_eq!(modelscope_endpoint(&env), "http://127.0.0.1:9");
    }

    #[test]
    fn token_file_is_read_when_no_variable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_abc\n").unwrap();
        let home = dir.path().to_string_lossy().to_string();
        let env = env_of(&[("HF_HOME", home.as_str())]);
        assert_eq!(hf_token(&env).as_deref(), Some("hf_abc"));
    }

    #[test]
    fn modelscope_layout() {
        let env = env_of(&[("MODELSCOPE_CACHE", "/ms")]);
        assert_eq!(
            modelscope_model_dir(&env, "Tongyi-MAI/Z-Image.Turbo"),
            PathBuf::from("/ms/models/Tongyi-MAI/Z-Image___Turbo")
        );
        let env = env_of(&[("HOME", "/h")]);
        assert_eq!(modelscope_cache(&env), PathBuf::from("/h/.cache/modelscope/hub"));
    }
}
