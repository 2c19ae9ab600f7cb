#!/usr/bin/env python3
"""Times diffusers' ZImagePipeline (the reference we compare our speed against) and writes JSON.

Modelled on ../shared/anchors/diffusers_bench.py, with the same row fields (total_s, denoise_s,
vae_s, per_step_s, peak_alloc_gib, peak_reserved_gib) plus the text-encoder time and
peak_nvml_gib (device memory in use, sampled from NVML as zimage-tui measures its own), so
scripts/bench-gpu.sh can put them beside zimage-tui's numbers.

Weights: `--model DIR` (a diffusers directory, e.g. one written by make_fixtures.py
--full-size) or random ones of the real Z-Image-Turbo shapes (`--random full`, the default) or
the tiny fixture shapes (`--random tiny`, for a quick CPU check). Timing does not depend on the
weight values.

    python scripts/diffusers_bench.py --device cuda --sizes 1024x1024,2048x2048 --steps 8 --out r.json
    python scripts/diffusers_bench.py --device cuda --low-vram --compile
    python scripts/diffusers_bench.py --device cpu --random tiny --sizes 64x96 --steps 2 --reps 1

Sizes are HEIGHTxWIDTH. Modes: default (everything resident); `--low-vram` (text encoder kept
on the CPU and moved to the device only to encode, tiled VAE decode); `--compile`
(`transformer.compile_repeated_blocks(fullgraph=True)`, regional compile as in the anchor).
"""

import argparse
import datetime
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as fx  # noqa: E402  (configs and the random-weight builder are shared)

from diffusers import ZImagePipeline  # noqa: E402

PROMPT = fx.PROMPTS["en"]


def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"bad size {item!r}: expected HEIGHTxWIDTH, e.g. 1024x768")
        if h % 16 or w % 16 or h <= 0 or w <= 0:
            raise SystemExit(f"bad size {item!r}: both sides must be positive multiples of 16")
        sizes.append((h, w))
    return sizes


class Clock:
    def __init__(self, device):
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def now(self):
        self.sync()
        return time.perf_counter()


def build_pipeline(args, dtype):
    if args.model:
        pipe = ZImagePipeline.from_pretrained(args.model, torch_dtype=dtype)
        return pipe, f"model dir {args.model}"
    ns = argparse.Namespace(full_size=args.random == "full", scale_down=False)
    import tempfile

    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        if args.random == "full":
            tok_dir = fx.real_tokenizer_dir(tmp)
            vocab = fx.REAL_TEXT_ENCODER["vocab_size"]
        else:
            tok_dir = fx.build_tiny_tokenizer(os.path.join(tmp, "tok"))
            vocab = len(transformers.AutoTokenizer.from_pretrained(tok_dir))
        pipe = fx.build_parts(ns, tok_dir, vocab, args.device if not args.low_vram else "cpu", dtype)
    return pipe, f"random {args.random}-size weights"


class NvmlPeak:
    """Device memory in use (NVML, as zimage-tui measures its own), sampled at 50 Hz in a thread:
    what `nvidia-smi` shows, so it includes the CUDA context and PyTorch's cached blocks. Reads
    libnvidia-ml through ctypes (no extra package); inactive where it cannot be loaded."""

    def __init__(self, index=0):
        import ctypes
        import threading
        self.peak, self.lock, self.stop, self.thread = 0, threading.Lock(), threading.Event(), None
        try:
            self.nvml = ctypes.CDLL("libnvidia-ml.so.1")
            self.handle = ctypes.c_void_p()
            ok = self.nvml.nvmlInit_v2() == 0 and \
                self.nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self.handle)) == 0
        except OSError:
            ok = False
        self.active = ok

        class Memory(ctypes.Structure):
            _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
        self.memory, self.ctypes, self.threading = Memory(), ctypes, threading

    def used(self):
        if self.nvml.nvmlDeviceGetMemoryInfo(self.handle, self.ctypes.byref(self.memory)) != 0:
            return 0
        return self.memory.used

    def start(self):
        if not self.active:
            return
        self.peak = self.used()
        self.stop.clear()

        def sample():
            while not self.stop.wait(0.02):
                value = self.used()
                with self.lock:
                    self.peak = max(self.peak, value)
        self.thread = self.threading.Thread(target=sample, daemon=True)
        self.thread.start()

    def finish(self):
        """Peak GiB since start (None when NVML is unavailable)."""
        if not self.active or self.thread is None:
            return None
        self.stop.set()
        self.thread.join()
        with self.lock:
            return max(self.peak, self.used()) / 2**30


def peak(clock):
    if clock.cuda:
        return torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30
    # CPU: the process' peak resident set (kernel reports KiB), as the nearest equivalent.
    return None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_once(pipe, args, clock, h, w, steps, gen_seed):
    dev = args.device
    step_times = []

    def on_step(p, i, t, kw):
        step_times.append(clock.now())
        return kw

    t0 = clock.now()
    if args.low_vram:
        pipe.text_encoder.to(dev)
    embeds, _ = pipe.encode_prompt(PROMPT, device=dev, do_classifier_free_guidance=False)
    if args.low_vram:
        pipe.text_encoder.to("cpu")
        if clock.cuda:
            torch.cuda.empty_cache()
    t1 = clock.now()
    latents = pipe(
        prompt_embeds=embeds, height=h, width=w, num_inference_steps=steps, guidance_scale=0.0,
        generator=torch.Generator(dev).manual_seed(gen_seed), output_type="latent", callback_on_step_end=on_step,
    ).images
    t2 = clock.now()
    with torch.no_grad():
        z = latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        image = pipe.vae.decode(z, return_dict=False)[0]
        pipe.image_processor.postprocess(image, output_type="pt")
    t3 = clock.now()
    return dict(total_s=t3 - t0, encode_s=t1 - t0, denoise_s=t2 - t1, vae_s=t3 - t2)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def bench(pipe, args, clock, h, w, steps, compiled):
    row = {"h": h, "w": w, "steps": steps, "mode": "low-vram" if args.low_vram else "default",
           "compile": compiled}
    try:
        if clock.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        nvml = NvmlPeak() if clock.cuda else None
        if nvml:
            nvml.start()
        t = time.perf_counter()
        run_once(pipe, args, clock, h, w, steps, 42)  # warm-up (and compile when asked)
        row["warmup_s"] = time.perf_counter() - t
        runs = [run_once(pipe, args, clock, h, w, steps, 42) for _ in range(args.reps)]
        for key in ("total_s", "encode_s", "denoise_s", "vae_s"):
            row[key] = median([r[key] for r in runs])
        row["per_step_s"] = row["denoise_s"] / steps
        # the anchor's total_s (shared/anchors) excluded the text encoder; this one is comparable
        row["total_no_encode_s"] = median([r["denoise_s"] + r["vae_s"] for r in runs])
        row["peak_alloc_gib"], row["peak_reserved_gib"] = peak(clock)
        row["peak_nvml_gib"] = nvml.finish() if nvml else None
        row["ok"] = True
    except torch.OutOfMemoryError:
        row.update(ok=False, error="OOM")
    except Exception as e:  # a failed size is reported and the sweep goes on
        row.update(ok=False, error=repr(e)[:300])
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024x1024,2048x2048", help="HEIGHTxWIDTH list, comma separated")
    ap.add_argument("--steps", default="8", help="step counts, comma separated")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default=None, help="default: bf16 on cuda, f32 on cpu")
    ap.add_argument("--model", help="diffusers model directory (default: random weights)")
    ap.add_argument("--random", choices=["full", "tiny"], default="full", help="random weights' shapes")
    ap.add_argument("--compile", action="store_true", help="also time with regional torch.compile")
    ap.add_argument("--low-vram", action="store_true", help="text encoder on the CPU between prompts, tiled VAE")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", help="write the JSON report here (default: print only)")
    args = ap.parse_args()
    sizes = parse_sizes(args.sizes)
    try:
        steps_list = [int(s) for s in args.steps.split(",")]
    except ValueError:
        raise SystemExit(f"bad --steps {args.steps!r}: expected integers, e.g. 8,9")
    if args.reps < 1 or any(s < 1 for s in steps_list):
        raise SystemExit("--reps and every step count must be at least 1")
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[args.dtype or ("bf16" if args.device != "cpu" else "f32")]
    clock = Clock(args.device)

    t = time.perf_counter()
    with torch.no_grad():
        pipe, weights = build_pipeline(args, dtype)
    if args.low_vram:
        pipe.transformer.to(args.device)
        pipe.vae.to(args.device)
        pipe.vae.enable_tiling()
    else:
        pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    clock.sync()
    report = {
        "tool": "diffusers", "diffusers": fx.diffusers.__version__, "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if clock.cuda else "cpu", "dtype": str(dtype).replace("torch.", ""),
        "weights": weights, "build_s": time.perf_counter() - t,
        "transformer_params": sum(p.numel() for p in pipe.transformer.parameters()),
        "te_params": sum(p.numel() for p in pipe.text_encoder.parameters()),
        "vae_params": sum(p.numel() for p in pipe.vae.parameters()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": [],
    }
    for steps in steps_list:
        for h, w in sizes:
            report["runs"].append(bench(pipe, args, clock, h, w, steps, False))
    if args.compile:
        t = time.perf_counter()
        pipe.transformer.compile_repeated_blocks(fullgraph=True)
        for steps in steps_list:
            for h, w in sizes:
                row = bench(pipe, args, clock, h, w, steps, True)
                row["since_compile_s"] = time.perf_counter() - t
                report["runs"].append(row)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))
    return 0 if all(r["ok"] for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
