#!/usr/bin/env python3
"""Puts zimage-tui's bench reports and diffusers_bench.py's report side by side (issue 5).

Inputs: `zimage-tui bench` report.json files, one per mode (`--ours default=DIR/report.json
--ours low-vram=DIR2/report.json`; rows come from its `runs` and `sweep` sections), and
diffusers_bench.py `--out` files (`--diffusers FILE`, repeatable; each row carries its mode and
whether it ran under torch.compile). Optionally gpu_parity's `--json` (`--parity FILE`).

Output: one row per (mode, width, height, steps) that either side measured, with
  card, mode, width, height, steps, ours_s, diffusers_s, ratio, ours_peak_gib,
  diffusers_peak_gib, date, commit  (+ diffusers_compile_s, ratio_compile, notes)
where ratio = diffusers_s / ours_s (> 1: ours is faster), times are end to end (encode + steps
+ decode, medians of the measured runs), ours_peak_gib is the device memory in use (NVML, so it
includes the CUDA context) and diffusers_peak_gib is torch.cuda.max_memory_allocated (its
reserved figure is kept as diffusers_reserved_gib). Prints a Markdown table, writes --json and --md.

    python3 scripts/combine_bench.py --ours default=a/report.json --ours low-vram=b/report.json \\
        --diffusers d.json --diffusers d-low.json --json bench-gpu.json --md bench-gpu.md
"""

import argparse
import datetime
import json
import statistics
import sys

GIB = 2**30
MODES = ("default", "low-vram")


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read {path}: {e}")


def ok(job):
    return not job.get("warmup") and (job.get("outcome") or {}).get("kind") == "ok"


def ours_rows(report, mode):
    """{(mode, w, h, steps): {"s": median total_s, "peak_gib": max peak, "failed": outcome}}."""
    jobs = []
    for section in ("runs", "sweep"):
        jobs += (report.get(section) or {}).get("jobs") or []
    grouped = {}
    for job in jobs:
        if job.get("warmup"):
            continue
        req = job.get("request") or {}
        key = (mode, req.get("width"), req.get("height"), req.get("steps"))
        grouped.setdefault(key, []).append(job)
    rows = {}
    for key, group in grouped.items():
        good = [j for j in group if ok(j) and j.get("total_s") is not None]
        peaks = [j["memory"]["peak_bytes"] for j in good if (j.get("memory") or {}).get("peak_bytes") is not None]
        row = {
            "s": statistics.median(j["total_s"] for j in good) if good else None,
            "peak_gib": max(peaks) / GIB if peaks else None,
        }
        if not good:
            kinds = sorted({(j.get("outcome") or {}).get("kind", "?") for j in group})
            row["failed"] = ",".join(kinds)
        rows[key] = row
    return rows


def diffusers_rows(report):
    """{(mode, w, h, steps): {"eager": row, "compile": row}} from diffusers_bench.py rows (h, w)."""
    rows = {}
    for run in report.get("runs") or []:
        key = (run.get("mode", "default"), run.get("w"), run.get("h"), run.get("steps"))
        rows.setdefault(key, {})["compile" if run.get("compile") else "eager"] = run
    return rows


def ratio(theirs, ours):
    return theirs / ours if theirs is not None and ours else None


def combine(ours, diffusers, card, date, commit):
    keys = sorted(set(ours) | set(diffusers), key=lambda k: (MODES.index(k[0]) if k[0] in MODES else 9, k[1:]))
    rows = []
    for key in keys:
        mode, width, height, steps = key
        o = ours.get(key) or {}
        d = diffusers.get(key) or {}
        eager, compiled = d.get("eager") or {}, d.get("compile") or {}
        d_s = eager.get("total_s") if eager.get("ok") else None
        dc_s = compiled.get("total_s") if compiled.get("ok") else None
        notes = []
        if o.get("failed"):
            notes.append(f"ours: {o['failed']}")
        if not o:
            notes.append("ours: not run")
        if eager and not eager.get("ok"):
            notes.append(f"diffusers: {eager.get('error', 'failed')}")
        if not eager:
            notes.append("diffusers: not run")
        rows.append({
            "card": card, "mode": mode, "width": width, "height": height, "steps": steps,
            "ours_s": o.get("s"), "diffusers_s": d_s, "ratio": ratio(d_s, o.get("s")),
            "ours_peak_gib": o.get("peak_gib"),
            "diffusers_peak_gib": eager.get("peak_alloc_gib") if eager.get("ok") else None,
            "diffusers_nvml_gib": eager.get("peak_nvml_gib") if eager.get("ok") else None,
            "diffusers_reserved_gib": eager.get("peak_reserved_gib") if eager.get("ok") else None,
            "diffusers_compile_s": dc_s, "ratio_compile": ratio(dc_s, o.get("s")),
            "date": date, "commit": commit, "notes": "; ".join(notes),
        })
    return rows


def fmt(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def sci(value):
    return "–" if value is None else f"{value:.2e}"


COLUMNS = [("size", None), ("steps", None), ("mode", None), ("ours_s", 2), ("diffusers_s", 2), ("ratio", 2),
           ("ours_peak_gib", 1), ("diffusers_nvml_gib", 1), ("diffusers_peak_gib", 1), ("diffusers_compile_s", 2), ("ratio_compile", 2),
           ("notes", None)]


def markdown_table(rows):
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|" + "|".join("---" if d is None else "---:" for _, d in COLUMNS) + "|"]
    for r in rows:
        cells = []
        for name, digits in COLUMNS:
            if name == "size":
                cells.append(f"{r['width']}×{r['height']}")
            elif digits is None:
                cells.append(str(r[name]))
            else:
                cells.append(fmt(r[name], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parity_lines(parity):
    lines = [f"Parity against diffusers (`gpu_parity` on {parity.get('fixture')}, {parity.get('device')} {parity.get('dtype')}, "
             f"rel. error tol {parity.get('rel_tol')}, PSNR ≥ {parity.get('min_psnr_db')} dB): "
             f"**{'PASS' if parity.get('pass') else 'FAIL'}**", "",
             "| stage | rel_l2 | max/max | psnr_db | result |", "|---|---:|---:|---:|---|"]
    for row in parity.get("rows") or []:
        if not row.get("checked") and row.get("stage", "").startswith("pipe.latents."):
            continue  # the intermediate steps are in the JSON
        psnr = row.get("psnr_db")
        is_image = not row.get("shape")
        lines.append(f"| {row.get('stage')} | {sci(row.get('rel_l2')) if not is_image else '–'} | "
                     f"{sci(row.get('rel_max')) if not is_image else '–'} | "
                     f"{('inf' if psnr is None else f'{psnr:.2f}') if is_image else '–'} | "
                     f"{'info' if not row.get('checked') else ('ok' if row.get('pass') else 'FAIL')} |")
    floor = parity.get("noise_floor") or []
    if floor:
        lines += ["", "Against the same stage in float32 (the comparison's noise floor: two bf16 implementations "
                      "each this far from float32 can differ by up to ~1.4× as much):", "",
                  "| stage | ours vs f32 | diffusers vs f32 | ratio | verdict |", "|---|---:|---:|---:|---|"]
        for n in floor:
            verdict = "as accurate as diffusers" if n.get("as_accurate") else "less accurate than diffusers"
            lines.append(f"| {n.get('stage')} | {sci(n.get('ours_vs_f32'))} | {sci(n.get('diffusers_vs_f32'))} | "
                         f"{fmt(n.get('ratio'), 2)} | {verdict} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", action="append", default=[], metavar="MODE=REPORT_JSON",
                    help="a zimage-tui bench report.json and its mode (default or low-vram)")
    ap.add_argument("--diffusers", action="append", default=[], metavar="FILE",
                    help="a diffusers_bench.py --out file")
    ap.add_argument("--parity", help="gpu_parity --json output (adds a parity section to the .md)")
    ap.add_argument("--card", help="card name (default: from the reports)")
    ap.add_argument("--commit", help="commit of ours (default: from zimage-tui's report)")
    ap.add_argument("--date", help="UTC date (default: from zimage-tui's report, else now)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--md", help="write the Markdown report here")
    args = ap.parse_args(argv)
    if not args.ours and not args.diffusers and not args.parity:
        ap.error("nothing to combine: give --ours, --diffusers and/or --parity")

    ours, headers = {}, []
    for item in args.ours:
        mode, sep, path = item.partition("=")
        if not sep or mode not in MODES:
            ap.error(f"--ours {item!r}: expected MODE=PATH with MODE one of {', '.join(MODES)}")
        report = load(path)
        headers.append(report.get("header") or {})
        ours.update(ours_rows(report, mode))
    diffusers, d_reports = {}, []
    for path in args.diffusers:
        report = load(path)
        d_reports.append(report)
        for key, value in diffusers_rows(report).items():
            diffusers.setdefault(key, {}).update(value)

    card = args.card or next((h.get("device", {}).get("card") for h in headers if h.get("device", {}).get("card")),
                             None) or next((r.get("device") for r in d_reports if r.get("device")), "unknown")
    commit = args.commit or next((h.get("git_commit") for h in headers if h.get("git_commit")), None)
    date = args.date or next((h.get("date_utc") for h in headers if h.get("date_utc")), None) or \
        datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rows = combine(ours, diffusers, card, date, commit)

    table = markdown_table(rows) if rows else "(no benchmark rows)"
    print(table)
    versions = ", ".join(sorted({f"diffusers {r.get('diffusers')}, torch {r.get('torch')}" for r in d_reports}))
    md = [f"# zimage-tui vs diffusers on {card}", "",
          f"Date {date}, zimage-tui commit {commit or 'unknown'}" + (f"; {versions}" if versions else "") + ".",
          "Times are end to end (text encoding + denoising steps + VAE decode), medians; ratio = "
          "diffusers_s / ours_s (> 1: zimage-tui is faster). ours_peak_gib: device memory in use "
          "(NVML, includes the CUDA context); diffusers_nvml_gib: the same NVML measure for diffusers "
          "(includes its context and cached blocks); diffusers_peak_gib: torch max_memory_allocated. "
          "Random full-size weights on both sides.", "", table, ""]
    if args.parity:
        parity = load(args.parity)
        md += parity_lines(parity) + [""]
        print("\n".join(parity_lines(parity)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1, ensure_ascii=False)
            f.write("\n")
    if args.md:
        with open(args.md, "w", encoding="utf-8") as f:
            f.write("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
