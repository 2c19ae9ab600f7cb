#!/usr/bin/env python3
"""Parity fixtures: a random Z-Image-Turbo (tiny or full size) and diffusers' reference outputs.

Builds ZImagePipeline's five parts with diffusers 0.42.1 / transformers, re-randomises every
weight with fixed seeds, saves them with `save_pretrained` in the real Hugging Face layout and
records what diffusers computes from them: token ids, text-encoder embeddings, scheduler
sigmas/timesteps, one transformer forward, one VAE decode and a whole pipeline run from fixed
initial latents. tests/fixtures/README.md documents every output name.

    python scripts/make_fixtures.py                      # tiny, f32, CPU -> tests/fixtures/
    python scripts/make_fixtures.py --full-size --dtype bf16 --device cuda --out /tmp/zfull
    python scripts/make_fixtures.py --full-size --scale-down --out /tmp/zsmall   # code-path test
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

import diffusers
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
from diffusers.pipelines.z_image.pipeline_z_image import (
    calculate_shift,
    get_default_z_image_sigmas,
    retrieve_timesteps,
)
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3Model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures")
REAL_TOKENIZER = os.path.join(DEFAULT_OUT, "qwen3-tokenizer", "tokenizer.json")

# ---------------------------------------------------------------------------------------------
# Configurations. REAL_* are Tongyi-MAI/Z-Image-Turbo's config.json values (text encoder =
# Qwen3-4B); TINY_* keep every block kind with small widths.

REAL_TRANSFORMER = dict(
    all_patch_size=[2], all_f_patch_size=[1], in_channels=16, dim=3840, n_layers=30,
    n_refiner_layers=2, n_heads=30, n_kv_heads=30, norm_eps=1e-5, qk_norm=True, cap_feat_dim=2560,
    rope_theta=256.0, t_scale=1000.0, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512],
)
TINY_TRANSFORMER = dict(
    REAL_TRANSFORMER, dim=64, n_layers=2, n_refiner_layers=2, n_heads=2, n_kv_heads=2,
    cap_feat_dim=48, axes_dims=[8, 12, 12],
)
REAL_TEXT_ENCODER = dict(
    hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, vocab_size=151936, rope_theta=1000000.0,
    max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
    hidden_act="silu", bos_token_id=151643, eos_token_id=151645,
)
TINY_TEXT_ENCODER = dict(
    REAL_TEXT_ENCODER, hidden_size=48, intermediate_size=128, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
)  # vocab_size is set from the tiny tokenizer
REAL_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=16, act_fn="silu",
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32,
    sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, force_upcast=True,
    use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True,
)
TINY_VAE = dict(REAL_VAE, block_out_channels=[16, 16, 32, 32], layers_per_block=1, norm_num_groups=8)
SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)

# Shapes of the recorded runs, (height, width) in pixels. Image token counts are deliberately
# not multiples of 32 so the pad-token path runs.
TINY_SHAPES = dict(dit=(80, 112), vae=(80, 48), pipe=(64, 96))
FULL_SHAPES = dict(dit=(1008, 784), vae=(1024, 1024), pipe=(1024, 1024))
SCHED_SIZES = [(512, 512), (1024, 1024), (1280, 768)]
SCHED_STEPS = [8, 9]
PIPE_STEPS = 8
DIT_STEP_INDEX = 2  # the transformer fixture uses the t of step 2 of the 8-step schedule

PROMPTS = {
    "en": "A red fox sitting in fresh snow at sunrise, soft light, detailed fur, 35mm photo",
    "zh": "一只红狐狸坐在日出时的新雪中，柔和的光线，细腻的毛发，胶片摄影",
    # > 512 tokens with the real tokenizer, to show the truncation at max_sequence_length
    "long": " ".join(
        f"Panel {i}: a lighthouse keeper walks along the cliff with a lantern, waves crash below, "
        f"gulls circle the tower and the sky turns violet."
        for i in range(1, 31)
    ),
}
MAX_SEQUENCE_LENGTH = 512

# The real Qwen3 chat template (tokenizer_config.json of Qwen3 / Z-Image-Turbo).
QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
TINY_TOKENIZER_CORPUS = [
    "A red fox sitting in fresh snow at sunrise, soft light, detailed fur.",
    "A lighthouse keeper walks along the cliff with a lantern while waves crash below.",
    "Portrait of an old fisherman, dramatic lighting, cinematic, 85mm lens, shallow depth of field.",
    "A bowl of ramen on a wooden table, steam rising, neon signs reflected in the window.",
    "Watercolor painting of a mountain village in autumn, warm colors, morning mist.",
    "一只红狐狸坐在日出时的新雪中，柔和的光线，细腻的毛发。",
    "灯塔看守人提着灯笼沿着悬崖行走，海浪在下面拍打。",
    "秋天山村的水彩画，暖色调，清晨的薄雾，远处的寺庙和竹林。",
    "一碗拉面放在木桌上，热气腾腾，窗户里倒映着霓虹灯。",
    "user assistant system The the of and in with a an to is are on at by for from photo image",
]


def load_chat_template():
    cfg = os.path.join(os.path.dirname(REAL_TOKENIZER), "tokenizer_config.json")
    with open(cfg, encoding="utf-8") as f:
        return json.load(f)["chat_template"]


# ---------------------------------------------------------------------------------------------
# Weights


def randomize_(module, seed, device):
    """Every parameter random (pad tokens and norm weights too, so no path hides behind 0 or 1).

    Matrices ~ N(0, 1/fan_in) keep activations O(1) through the tiny stacks, so f32 relative
    errors stay meaningful."""
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32)
            if name.endswith("pad_token"):
                value = noise * 0.5
            elif p.ndim == 1 and "norm" in name and name.endswith("weight"):
                value = 1.0 + 0.1 * noise
            elif p.ndim == 1:
                value = 0.05 * noise
            else:
                value = noise / math.sqrt(p[0].numel())
            p.copy_(value.to(p.dtype))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Tokenizers


def real_tokenizer_dir(tmp):
    """A transformers tokenizer directory from the committed real tokenizer.json + config."""
    src = os.path.dirname(REAL_TOKENIZER)
    dst = os.path.join(tmp, "qwen3-tokenizer")
    os.makedirs(dst, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, name), dst)
    return dst


def build_tiny_tokenizer(out_dir):
    """Byte-level BPE with Qwen's normalizer/pre-tokenizer/decoder and Qwen's special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=640, min_frequency=1, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(TINY_TOKENIZER_CORPUS * 4, trainer)
    # Added after the BPE vocabulary, in Qwen's order (ids 151643.. in the real one).
    from tokenizers import AddedToken

    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")]
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tiny_tokenizer_config(), f, ensure_ascii=False, indent=1)
    return out_dir


def tiny_tokenizer_config():
    return {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 131072,
        "chat_template": load_chat_template(),
    }


def templated(tokenizer, prompt):
    """Exactly ZImagePipeline._encode_prompt's text."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True, enable_thinking=True
    )


def pipeline_ids(tokenizer, prompt):
    """(ids [512], mask [512]) as ZImagePipeline._encode_prompt tokenizes."""
    enc = tokenizer(
        [templated(tokenizer, prompt)], padding="max_length", max_length=MAX_SEQUENCE_LENGTH,
        truncation=True, return_tensors="pt",
    )
    return enc.input_ids, enc.attention_mask.bool()


def check_against_tokenizers_lib(tokenizer_json, tokenizer, prompt):
    """Rust uses the `tokenizers` crate on tokenizer.json: its plain encode must give the same ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    text = templated(tokenizer, prompt)
    plain = tok.encode(text, add_special_tokens=True).ids[:MAX_SEQUENCE_LENGTH]
    ids, mask = pipeline_ids(tokenizer, prompt)
    assert plain == ids[0][mask[0]].tolist(), f"tokenizers lib and transformers disagree on {prompt[:30]!r}"
    return len(tok.encode(text).ids)


# ---------------------------------------------------------------------------------------------
# Recording


class Recorder:
    def __init__(self, full):
        self.tensors = {}
        self.index = {}
        self.full = full

    def put(self, name, tensor, what):
        t = tensor.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(torch.float32)
        elif t.dtype != torch.uint8:
            t = t.to(torch.int64)
        t = t.contiguous().clone()
        assert name not in self.tensors, name
        self.tensors[name] = t
        self.index[name] = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "what": what}


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def build_parts(args, tokenizer_dir, vocab_size, device, dtype):
    t_cfg = dict(REAL_TRANSFORMER if args.full_size else TINY_TRANSFORMER)
    te_cfg = dict(REAL_TEXT_ENCODER if args.full_size else TINY_TEXT_ENCODER)
    vae_cfg = dict(REAL_VAE if args.full_size else TINY_VAE)
    if args.scale_down:
        # Full-size code path, small enough for a CPU: real vocab and structure, few narrow layers.
        t_cfg.update(dim=256, n_heads=2, n_kv_heads=2, n_layers=2, n_refiner_layers=1, cap_feat_dim=128)
        te_cfg.update(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=32)
        vae_cfg.update(block_out_channels=[32, 32, 64, 64], layers_per_block=1, norm_num_groups=8)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    te_cfg["vocab_size"] = vocab_size
    te_cfg["bos_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    te_cfg["eos_token_id"] = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Built directly in the target dtype (a full-size f32 copy would not fit beside the rest).
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = ZImageTransformer2DModel(**t_cfg)
            vae = AutoencoderKL(**vae_cfg)
            text_encoder = Qwen3Model(Qwen3Config(**te_cfg))
    finally:
        torch.set_default_dtype(torch.float32)
    for seed, m in ((1, transformer), (2, vae), (3, text_encoder)):
        randomize_(m, seed, device)
        m.eval().requires_grad_(False)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    return ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer)


def save_model(pipe, model_dir, shard_size, tokenizer_src):
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    pipe.save_pretrained(model_dir, safe_serialization=True)
    # Sharded like the real checkpoint (3 transformer and 3 text-encoder shards there).
    for part in ("transformer", "text_encoder"):
        shutil.rmtree(os.path.join(model_dir, part))
        getattr(pipe, part).save_pretrained(os.path.join(model_dir, part), max_shard_size=shard_size[part],
                                            safe_serialization=True)
    # transformers 5 writes the chat template to chat_template.jinja; the real checkpoint keeps it
    # in tokenizer_config.json (as does our Rust loader's expectation), so keep that layout.
    tok_dir = os.path.join(model_dir, "tokenizer")
    shutil.copy(os.path.join(tokenizer_src, "tokenizer_config.json"), tok_dir)
    jinja = os.path.join(tok_dir, "chat_template.jinja")
    if os.path.exists(jinja):
        os.remove(jinja)
    shards = [f for f in os.listdir(os.path.join(model_dir, "transformer")) if f.endswith(".safetensors")]
    assert len(shards) >= 2, f"transformer was not sharded: {shards}"


def record_tokens(rec, meta, pipe, real_tok, real_json, tiny_json):
    """Real Qwen3 ids always; the tiny tokenizer's ids when the model has its own tokenizer."""
    meta["templated"], meta["qwen3_ids"], meta["untruncated_len"] = {}, {}, {}
    if tiny_json is not None:
        meta["tiny_ids"] = {}
    for key, prompt in PROMPTS.items():
        meta["templated"][key] = templated(pipe.tokenizer, prompt)
        assert meta["templated"][key] == f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
        meta["untruncated_len"]["qwen3." + key] = check_against_tokenizers_lib(real_json, real_tok, prompt)
        ids, mask = pipeline_ids(real_tok, prompt)
        real_ids = ids[0][mask[0]]
        rec.put(f"qwen3.{key}.ids", real_ids, "real Qwen3 tokenizer ids (templated, unpadded, <= 512)")
        meta["qwen3_ids"][key] = real_ids.tolist()
        if tiny_json is not None:
            meta["untruncated_len"]["tiny." + key] = check_against_tokenizers_lib(tiny_json, pipe.tokenizer, prompt)
            ids, mask = pipeline_ids(pipe.tokenizer, prompt)
            tiny_ids = ids[0][mask[0]]
            rec.put(f"tiny.{key}.ids", tiny_ids, "tiny tokenizer ids (templated, unpadded, <= 512)")
            meta["tiny_ids"][key] = tiny_ids.tolist()


def record_text_encoder(rec, meta, pipe, f64_te):
    embeds = {}
    for key, prompt in PROMPTS.items():
        ids, mask = pipeline_ids(pipe.tokenizer, prompt)
        dev = pipe.text_encoder.device
        out = pipe.text_encoder(input_ids=ids.to(dev), attention_mask=mask.to(dev), output_hidden_states=True)
        hs = out.hidden_states
        emb = hs[-2][0][mask[0].to(dev)]
        via_pipeline = pipe._encode_prompt(prompt, device=dev)[0]
        assert torch.equal(emb, via_pipeline), "hidden_states[-2] bookkeeping differs from the pipeline"
        rec.put(f"te.{key}.embeds", emb, "text encoder hidden_states[-2] of the real tokens")
        embeds[key] = emb
        if key == "en" and not rec.full:
            for k, h in enumerate(hs):
                rec.put(f"te.en.hidden.{k}", h[0][mask[0]], f"hidden_states[{k}] of the real tokens")
        if f64_te is not None:
            ref = f64_te(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2][0][mask[0]]
            meta.setdefault("rel_err_vs_f64", {})[f"te.{key}.embeds"] = rel_err(emb.cpu(), ref)
    meta["text_encoder_hidden_states_len"] = len(hs)
    return embeds


def record_scheduler(rec, meta, pipe):
    meta["scheduler"] = {}
    for steps in SCHED_STEPS:
        for (h, w) in SCHED_SIZES:
            sched = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
            lat_h, lat_w = 2 * (h // 16), 2 * (w // 16)
            seq_len = (lat_h // 2) * (lat_w // 2)
            mu = calculate_shift(
                seq_len, sched.config.get("base_image_seq_len", 256), sched.config.get("max_image_seq_len", 4096),
                sched.config.get("base_shift", 0.5), sched.config.get("max_shift", 1.15),
            )
            timesteps, n = retrieve_timesteps(sched, steps, "cpu", sigmas=get_default_z_image_sigmas(steps), mu=mu)
            assert n == steps
            dit_t = (1000 - timesteps) / 1000
            key = f"sched.s{steps}.h{h}w{w}"
            rec.put(key + ".sigmas", sched.sigmas, "scheduler.sigmas (N+1, last 0)")
            rec.put(key + ".timesteps", timesteps, "scheduler.timesteps")
            rec.put(key + ".dit_t", dit_t, "t passed to the transformer: (1000 - timestep) / 1000")
            meta["scheduler"][f"s{steps}.h{h}w{w}"] = {
                "mu_ignored_static_shift": mu,
                "sigmas": sched.sigmas.tolist(),
                "timesteps": timesteps.tolist(),
                "dit_t": dit_t.tolist(),
                "dit_t_times_t_scale": (dit_t * 1000.0).tolist(),
            }


def latent_shape(pipe, h, w):
    f = pipe.vae_scale_factor
    return (pipe.transformer.config.in_channels, 2 * (h // (f * 2)), 2 * (w // (f * 2)))


def record_transformer(rec, meta, pipe, cap, f64_transformer, dtype):
    tr = pipe.transformer
    dev = tr.device
    h, w = SHAPES["dit"]
    c, lh, lw = latent_shape(pipe, h, w)
    gen = torch.Generator().manual_seed(10)
    x = torch.randn((c, 1, lh, lw), generator=gen)
    sched = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    timesteps, _ = retrieve_timesteps(sched, PIPE_STEPS, "cpu", sigmas=get_default_z_image_sigmas(PIPE_STEPS), mu=0.0)
    t = ((1000 - timesteps[DIT_STEP_INDEX].expand(1)) / 1000)
    caps = {}
    hooks = []
    if not rec.full:
        def save_out(name):
            return lambda m, a, o: caps.__setitem__(name, o[0] if isinstance(o, tuple) else o)

        hooks.append(tr.t_embedder.register_forward_hook(save_out("dit.adaln_input")))
        hooks.append(tr.noise_refiner[0].register_forward_pre_hook(lambda m, a: caps.__setitem__("dit.x_embedded", a[0])))
        hooks.append(tr.noise_refiner[-1].register_forward_hook(save_out("dit.x_refined")))
        hooks.append(tr.context_refiner[0].register_forward_pre_hook(
            lambda m, a: caps.__setitem__("dit.cap_embedded", a[0])))
        hooks.append(tr.context_refiner[-1].register_forward_hook(save_out("dit.cap_refined")))
        hooks.append(tr.layers[0].register_forward_pre_hook(lambda m, a: caps.__setitem__("dit.freqs", a[2])))
        for i, layer in enumerate(tr.layers):
            hooks.append(layer.register_forward_hook(save_out(f"dit.layer.{i}")))
        hooks.append(tr.all_final_layer["2-1"].register_forward_hook(save_out("dit.final")))
    out = tr([x.to(dev, dtype)], t.to(dev), [cap.to(dev, dtype)], return_dict=False)[0][0]
    for hk in hooks:
        hk.remove()
    rec.put("dit.x", x, "latent list element [C,F,H,W] given to the transformer")
    rec.put("dit.t", t, "t as the pipeline passes it ((1000 - timestep)/1000)")
    rec.put("dit.cap_feats", cap, "caption features (te.en.embeds)")
    rec.put("dit.out", out, "transformer output list element [C,F,H,W], not negated")
    n_img = (lh // 2) * (lw // 2)
    meta["transformer_forward"] = {
        "height": h, "width": w, "latent": [c, 1, lh, lw], "image_tokens": n_img,
        "image_tokens_padded": n_img + (-n_img) % 32, "cap_len": int(cap.shape[0]),
        "cap_len_padded": int(cap.shape[0]) + (-int(cap.shape[0])) % 32,
        "t": float(t[0]), "t_from": f"step {DIT_STEP_INDEX} of the {PIPE_STEPS}-step schedule",
    }
    if not rec.full:
        from diffusers.models.transformers.transformer_z_image import TimestepEmbedder

        rec.put("dit.t_freq", TimestepEmbedder.timestep_embedding(t * tr.config.t_scale, 256),
                "sinusoidal embedding of t * t_scale, cat[cos, sin]")
        _, _, _, x_pos, cap_pos, _, _ = tr.patchify_and_embed([x], [cap], 2, 1)
        cap_pad = meta["transformer_forward"]["cap_len_padded"]
        rec.put("dit.x_pos_ids", x_pos[0], "image position ids (F, H, W axes) incl. pad rows")
        rec.put("dit.cap_pos_ids", cap_pos[0][:cap_pad], "caption position ids incl. pad rows")
        for name in ("dit.adaln_input", "dit.x_embedded", "dit.x_refined", "dit.cap_embedded", "dit.cap_refined"):
            rec.put(name, caps[name], "intermediate, see README")
        rec.put("dit.freqs_cos", caps["dit.freqs"][0].real, "RoPE cos of the unified sequence")
        rec.put("dit.freqs_sin", caps["dit.freqs"][0].imag, "RoPE sin of the unified sequence")
        for i in range(len(tr.layers)):
            rec.put(f"dit.layer.{i}", caps[f"dit.layer.{i}"], f"unified sequence after main layer {i}")
        rec.put("dit.final", caps["dit.final"], "final layer output before unpatchify")
    if f64_transformer is not None:
        ref = f64_transformer([x.double()], t.double(), [cap.double()], return_dict=False)[0][0]
        meta.setdefault("rel_err_vs_f64", {})["dit.out"] = rel_err(out.cpu(), ref)


def record_f32_references(rec, meta, pipe, model_dir, embeds):
    """Full size on a GPU: the text encoder and the transformer forward again in float32 (the saved
    bf16 weights, upcast), so gpu_parity can show how far each bf16 implementation is from a
    higher-precision result: diffusers' own bf16 distance is the noise floor of the comparison."""
    dev = pipe.transformer.device
    te_cls, tr_cls = type(pipe.text_encoder), type(pipe.transformer)
    te = te_cls.from_pretrained(os.path.join(model_dir, "text_encoder"), torch_dtype=torch.float32).to(dev)
    for key, prompt in PROMPTS.items():
        ids, mask = pipeline_ids(pipe.tokenizer, prompt)
        out = te(input_ids=ids.to(dev), attention_mask=mask.to(dev), output_hidden_states=True)
        ref = out.hidden_states[-2][0][mask[0].to(dev)]
        rec.put(f"te.{key}.embeds_f32", ref, "the same text encoder in float32 (noise-floor reference)")
        meta.setdefault("rel_err_vs_f32", {})[f"te.{key}.embeds"] = rel_err(embeds[key].cpu(), ref.cpu())
    del te
    torch.cuda.empty_cache()
    tr = tr_cls.from_pretrained(os.path.join(model_dir, "transformer"), torch_dtype=torch.float32).to(dev)
    x, t, cap = rec.tensors["dit.x"], rec.tensors["dit.t"], rec.tensors["dit.cap_feats"]
    ref = tr([x.to(dev)], t.to(dev), [cap.to(dev)], return_dict=False)[0][0]
    rec.put("dit.out_f32", ref, "the same transformer forward in float32 (noise-floor reference)")
    meta.setdefault("rel_err_vs_f32", {})["dit.out"] = rel_err(rec.tensors["dit.out"], ref.cpu())
    del tr
    torch.cuda.empty_cache()


def record_vae(rec, meta, pipe, f64_vae, dtype):
    vae = pipe.vae
    dev = vae.device
    h, w = SHAPES["vae"]
    c, lh, lw = latent_shape(pipe, h, w)
    gen = torch.Generator().manual_seed(11)
    latents = torch.randn((1, c, lh, lw), generator=gen)
    z = latents / vae.config.scaling_factor + vae.config.shift_factor
    caps = {}
    hooks = []
    if not rec.full:
        hooks.append(vae.decoder.mid_block.register_forward_hook(lambda m, a, o: caps.__setitem__("vae.mid", o)))
        for i, blk in enumerate(vae.decoder.up_blocks):
            hooks.append(blk.register_forward_hook(lambda m, a, o, i=i: caps.__setitem__(f"vae.up.{i}", o)))
    decoded = vae.decode(z.to(dev, dtype), return_dict=False)[0]
    for hk in hooks:
        hk.remove()
    image = pipe.image_processor.postprocess(decoded, output_type="np")[0]
    image_u8 = np.array(pipe.image_processor.postprocess(decoded, output_type="pil")[0])
    rec.put("vae.latents", latents, "latents as the pipeline holds them")
    rec.put("vae.z", z, "latents / scaling_factor + shift_factor (vae.decode input)")
    rec.put("vae.decoded", decoded, "vae.decode(z).sample")
    rec.put("vae.image", torch.from_numpy(image), "postprocess(..., 'np')[0], HWC in [0,1]")
    rec.put("vae.image_u8", torch.from_numpy(image_u8), "postprocess(..., 'pil')[0] as array, HWC")
    for name, t in caps.items():
        rec.put(name, t, "decoder intermediate")
    meta["vae_decode"] = {"height": h, "width": w, "latent": [1, c, lh, lw],
                          "scaling_factor": vae.config.scaling_factor, "shift_factor": vae.config.shift_factor}
    if f64_vae is not None:
        ref = f64_vae.decode(z.double(), return_dict=False)[0]
        meta.setdefault("rel_err_vs_f64", {})["vae.decoded"] = rel_err(decoded.cpu(), ref)


def record_pipeline(rec, meta, pipe):
    h, w = SHAPES["pipe"]
    c, lh, lw = latent_shape(pipe, h, w)
    gen = torch.Generator().manual_seed(12)
    latents0 = torch.randn((1, c, lh, lw), generator=gen)
    dev = pipe.transformer.device
    step_latents, dit_outs, decoded = [], [], []

    def on_step(p, i, t, kw):
        step_latents.append(kw["latents"].detach().clone())
        return kw

    hk1 = pipe.transformer.register_forward_hook(lambda m, a, o: dit_outs.append(o[0][0].detach().clone()))
    hk2 = pipe.vae.decoder.register_forward_hook(lambda m, a, o: decoded.append(o.detach().clone()))
    common = dict(prompt=PROMPTS["en"], height=h, width=w, num_inference_steps=PIPE_STEPS, guidance_scale=0.0,
                  latents=latents0.clone().to(dev), callback_on_step_end=on_step)
    image = pipe(output_type="np", **common).images[0]
    assert len(step_latents) == PIPE_STEPS and len(dit_outs) == PIPE_STEPS
    first_decoded = decoded[0]
    last_latents = step_latents[-1]
    step_latents.clear(); dit_outs.clear(); decoded.clear()
    image_u8 = np.array(pipe(output_type="pil", **common).images[0])
    assert torch.equal(step_latents[-1], last_latents), "pipeline is not deterministic"
    hk1.remove(); hk2.remove()
    rec.put("pipe.latents_init", latents0, "latents= passed to the pipeline")
    rec.put("pipe.prompt_embeds", pipe._encode_prompt(PROMPTS["en"], device=dev)[0], "prompt embeddings")
    for i in range(PIPE_STEPS):
        rec.put(f"pipe.dit_out.{i}", dit_outs[i], f"raw transformer output at step {i}")
        rec.put(f"pipe.latents.{i}", step_latents[i], f"latents after scheduler step {i}")
    rec.put("pipe.decoded", first_decoded, "VAE decoder output")
    rec.put("pipe.image", torch.from_numpy(image), "output_type='np' image, HWC in [0,1]")
    rec.put("pipe.image_u8", torch.from_numpy(image_u8), "output_type='pil' image as array, HWC")
    meta["pipeline"] = {"prompt": "en", "height": h, "width": w, "steps": PIPE_STEPS, "guidance_scale": 0.0,
                        "latent": [1, c, lh, lw], "image_tokens": (lh // 2) * (lw // 2)}


def main():
    global SHAPES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (model in OUT/tiny or OUT/model)")
    ap.add_argument("--full-size", action="store_true", help="real Z-Image-Turbo shapes and the real tokenizer")
    ap.add_argument("--scale-down", action="store_true",
                    help="with --full-size: real vocab/tokenizer/structure but narrow, few layers (CPU test)")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-f64", action="store_true", help="skip the float64 (tiny) / float32 (full size on CUDA) noise-floor references")
    args = ap.parse_args()
    if args.scale_down and not args.full_size:
        ap.error("--scale-down only makes sense with --full-size")
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    SHAPES = FULL_SHAPES if args.full_size and not args.scale_down else TINY_SHAPES
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(args.device == "cpu")
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    model_dir = os.path.join(args.out, "model" if args.full_size else "tiny")
    rec = Recorder(full=args.full_size and not args.scale_down)

    with tempfile.TemporaryDirectory() as tmp:
        real_dir = real_tokenizer_dir(tmp)
        real_tok = transformers.AutoTokenizer.from_pretrained(real_dir)
        if args.full_size:
            tok_dir, tiny_json = real_dir, None
            vocab = REAL_TEXT_ENCODER["vocab_size"]
        else:
            tok_dir = build_tiny_tokenizer(os.path.join(tmp, "tiny-tokenizer"))
            tiny_json = os.path.join(tok_dir, "tokenizer.json")
            vocab = len(transformers.AutoTokenizer.from_pretrained(tok_dir))
        pipe = build_parts(args, tok_dir, vocab, args.device, dtype)
        if not args.full_size:
            shard_size = {"transformer": "1MB", "text_encoder": "10GB"}  # tiny: only the transformer
        elif args.scale_down:
            shard_size = {"transformer": "2MB", "text_encoder": "40MB"}
        else:
            shard_size = {"transformer": "5GB", "text_encoder": "4GB"}
        save_model(pipe, model_dir, shard_size, tok_dir)
        if not args.full_size:
            # From here on everything runs on the pipeline as loaded back from disk.
            pipe = ZImagePipeline.from_pretrained(model_dir, torch_dtype=torch.float32)
            tiny_json = os.path.join(model_dir, "tokenizer", "tokenizer.json")
        pipe.to(args.device)
        pipe.set_progress_bar_config(disable=True)

        meta = {
            "generator": "scripts/make_fixtures.py" + (" --full-size" if args.full_size else "")
            + (" --scale-down" if args.scale_down else ""),
            "versions": {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
                         "torch": torch.__version__, "numpy": np.__version__},
            "dtype": args.dtype, "device": args.device,
            "model_dir": os.path.relpath(model_dir, args.out),
            "prompts": PROMPTS,
            "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "real_tokenizer_sha256": sha256(REAL_TOKENIZER),
        }
        f64 = None
        if not args.no_f64 and not rec.full:
            f64 = ZImagePipeline.from_pretrained(model_dir, torch_dtype=torch.float64)
        with torch.no_grad():
            record_tokens(rec, meta, pipe, real_tok, REAL_TOKENIZER, tiny_json)
            embeds = record_text_encoder(rec, meta, pipe, f64.text_encoder if f64 else None)
            record_scheduler(rec, meta, pipe)
            record_transformer(rec, meta, pipe, embeds["en"].cpu(), f64.transformer if f64 else None, dtype)
            record_vae(rec, meta, pipe, f64.vae if f64 else None, dtype)
            record_pipeline(rec, meta, pipe)
            if rec.full and dtype != torch.float32 and args.device.startswith("cuda") and not args.no_f64:
                record_f32_references(rec, meta, pipe, model_dir, embeds)

    meta["tensors"] = rec.index
    seconds = round(time.time() - t_start, 1)
    save_file(rec.tensors, os.path.join(args.out, "reference.safetensors"), metadata={"generator": meta["generator"]})
    with open(os.path.join(args.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(rec.tensors)} tensors to {args.out} in {seconds} s")


if __name__ == "__main__":
    sys.exit(main())
