//! The embedded demo model: Z-Image architecture with tiny dims, deterministic random weights
//! built in memory, and a tokenizer it builds itself (byte-level BPE over the 256 byte symbols
//! plus the Qwen special tokens). Needs no file and no network; its images are noise.

use super::assemble::{random_pipeline, ModelConfigs};
use super::loader::LoadOptions;
use super::pipeline::ZImagePipeline;
use super::weights::ProgressFn;
use super::{ModelError, Result};

/// Shown wherever the model is named (status bar, PNG metadata, JSON, reports).
pub const DEMO_LABEL: &str = "demo model (random weights)";
/// The global seed of the demo weights: every demo model everywhere is the same.
pub const DEMO_WEIGHTS_SEED: u64 = 0x2d15_ea5e_0000_0001;

/// Qwen's special tokens; the demo vocabulary gives them the ids after the 256 bytes.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Vocabulary size of the demo tokenizer: 256 byte symbols + the special tokens.
pub const DEMO_VOCAB_SIZE: usize = 256 + SPECIAL_TOKENS.len();

/// Builds the demo model in memory (about a second on a CPU): the Z-Image architecture with
/// tiny dims ([`ModelConfigs::demo`]), random weights from [`DEMO_WEIGHTS_SEED`], and
/// [`demo_tokenizer`].
pub fn build(options: &LoadOptions, progress: Option<ProgressFn>) -> Result<ZImagePipeline> {
    random_pipeline(
        DEMO_LABEL.to_string(),
        &ModelConfigs::demo(),
        DEMO_WEIGHTS_SEED,
        options,
        &progress,
    )
}

/// The demo tokenizer: GPT-2/Qwen-style byte-level pre-tokenization and decoding, a BPE model
/// whose vocabulary is the 256 byte symbols (no merges, so every byte is a token and any text,
/// Chinese included, encodes), and the Qwen special tokens so the chat template parses as it
/// does for the real tokenizer.
pub fn demo_tokenizer() -> Result<tokenizers::Tokenizer> {
    let vocab: serde_json::Map<String, serde_json::Value> = byte_symbols()
        .into_iter()
        .enumerate()
        .map(|(id, symbol)| (symbol.to_string(), serde_json::Value::from(id as u32)))
        .collect();
    let added: Vec<serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, token)| {
            serde_json::json!({
                "id": 256 + i, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes())
        .map_err(|err| ModelError::Compute(format!("cannot build the demo tokenizer: {err}")))
}

/// The printable symbols byte-level BPE uses for the bytes 0..=255, in byte order (GPT-2's
/// mapping: printable Latin-1 bytes stand for themselves, the others are shifted past 255).
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next_shifted = 256u32;
    (0u32..256)
        .map(|byte| {
            let code = if printable(byte) {
                byte
            } else {
                next_shifted += 1;
                next_shifted - 1
            };
            char::from_u32(code).unwrap_or('?')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_encodes_any_text_and_parses_the_chat_template() {
        let tokenizer = demo_tokenizer().unwrap();
        assert_eq!(tokenizer.get_vocab_size(true), DEMO_VOCAB_SIZE);
        let text = "<|im_start|>user\n一只猫 cat<|im_end|>\n<|im_start|>assistant\n";
        let ids = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ids[0], 257, "<|im_start|> is one special token");
        assert!(ids.contains(&258));
        // "user\n" = 5 bytes; 一只猫 = 9 bytes; " cat" = 4 bytes.
        assert_eq!(ids.len(), 1 + 5 + 9 + 4 + 1 + 1 + 1 + 10);
        assert!(ids.iter().all(|&id| (id as usize) < DEMO_VOCAB_SIZE));
        let decoded = tokenizer.decode(&ids, false).unwrap();
        assert_eq!(decoded, text);
    }
}
