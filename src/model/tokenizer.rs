//! Prompt → token ids, exactly as diffusers' `ZImagePipeline._encode_prompt` does it: the prompt is
//! wrapped in the Qwen3 chat template (one user message, `add_generation_prompt=True`,
//! `enable_thinking=True`), tokenized with the checkpoint's `tokenizer/tokenizer.json`, and cut at
//! 512 tokens. Unlike diffusers, a cut is reported as a warning.

use std::path::Path;

use super::{ModelError, Result, MAX_PROMPT_TOKENS};

/// The Qwen3 chat template as `apply_chat_template` renders a single user message with
/// `add_generation_prompt=True, enable_thinking=True` (checked against transformers in
/// tests/parity_text.rs). With thinking enabled, no empty `<think>` block is appended.
pub fn chat_prompt(prompt: &str) -> String {
    format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
}

/// Token ids of one prompt, ready for the text encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedPrompt {
    /// The ids the encoder sees (at most `max_tokens`), without padding.
    pub ids: Vec<u32>,
    /// How many tokens the templated prompt had before the cut (equal to `ids.len()` if none).
    pub full_len: usize,
    /// Notes for the user, e.g. that the prompt was truncated.
    pub warnings: Vec<String>,
}

impl TokenizedPrompt {
    pub fn truncated(&self) -> bool {
        self.full_len > self.ids.len()
    }
}

/// A Hugging Face tokenizer plus the chat template and the length limit of the pipeline.
#[derive(Clone)]
pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    max_tokens: usize,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl PromptTokenizer {
    /// Wraps an already built tokenizer (e.g. the demo model's in-code tokenizer). Any padding or
    /// truncation configured in it is switched off: the limit is applied here, with a warning.
    pub fn new(mut tokenizer: tokenizers::Tokenizer) -> Self {
        tokenizer.with_padding(None);
        // Removing truncation cannot fail (only invalid parameters are rejected).
        let _ = tokenizer.with_truncation(None);
        Self {
            inner: tokenizer,
            max_tokens: MAX_PROMPT_TOKENS,
        }
    }

    /// Loads `tokenizer.json` from disk.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).map_err(|err| ModelError::load(path, format!("cannot read: {err}")))?;
        Self::from_json_bytes(&bytes).map_err(|err| match err {
            ModelError::Load { problem, .. } => ModelError::load(path, problem),
            other => other,
        })
    }

    /// Parses an in-memory `tokenizer.json`.
    pub fn from_json_bytes(json: &[u8]) -> Result<Self> {
        let tokenizer = tokenizers::Tokenizer::from_bytes(json).map_err(|err| {
            ModelError::load("tokenizer.json", format!("not a valid tokenizer.json: {err}"))
        })?;
        Ok(Self::new(tokenizer))
    }

    /// Changes the token limit (diffusers' `max_sequence_length`, 512 by default).
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens.max(1);
        self
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Ids of `text` as given (no template, no limit), special tokens parsed as the HF tokenizer does.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|err| ModelError::Compute(format!("tokenizer failed: {err}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The pipeline's tokenization of a user prompt: chat template, then at most `max_tokens` ids
    /// (the tail is cut, as `truncation=True` does). An empty or blank prompt is refused.
    pub fn tokenize(&self, prompt: &str) -> Result<TokenizedPrompt> {
        if prompt.trim().is_empty() {
            return Err(ModelError::BadInput("the prompt is empty".into()));
        }
        let mut ids = self.encode_raw(&chat_prompt(prompt))?;
        let full_len = ids.len();
        let mut warnings = Vec::new();
        if full_len > self.max_tokens {
            ids.truncate(self.max_tokens);
            warnings.push(format!(
                "prompt truncated: {full_len} tokens with the chat template, only the first {} are used",
                self.max_tokens
            ));
        }
        Ok(TokenizedPrompt {
            ids,
            full_len,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer over a handful of words, enough to exercise the limit logic.
    fn tiny_tokenizer() -> PromptTokenizer {
        let json = r#"{
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "cat": 2}, "unk_token": "[UNK]"}
        }"#;
        PromptTokenizer::from_json_bytes(json.as_bytes()).expect("valid tokenizer json")
    }

    #[test]
    fn template_matches_qwen3_generation_prompt() {
        assert_eq!(
            chat_prompt("a cat"),
            "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn blank_prompt_is_refused() {
        let tok = tiny_tokenizer();
        for prompt in ["", "   ", "\n\t "] {
            assert!(
                matches!(tok.tokenize(prompt), Err(ModelError::BadInput(_))),
                "{prompt:?}"
            );
        }
    }

    #[test]
    fn long_prompt_is_cut_with_a_warning() {
        let tok = tiny_tokenizer().with_max_tokens(16);
        let short = tok.tokenize("a cat").expect("tokenizes");
        assert!(!short.truncated());
        assert!(short.warnings.is_empty());

        let long = tok.tokenize(&"a cat ".repeat(20)).expect("tokenizes");
        assert_eq!(long.ids.len(), 16);
        assert!(long.full_len > 16);
        assert!(long.truncated());
        assert_eq!(long.warnings.len(), 1);
        assert!(long.warnings[0].contains("truncated"), "{}", long.warnings[0]);
    }

    #[test]
    fn invalid_json_is_a_load_error() {
        let err = PromptTokenizer::from_json_bytes(b"{not json").expect_err("must fail");
        assert!(matches!(err, ModelError::Load { .. }), "{err}");
    }
}
