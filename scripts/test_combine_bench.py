#!/usr/bin/env python3
"""Tests of scripts/combine_bench.py on the FAKE sample reports in scripts/testdata/combine_bench/
(the numbers there are invented; they only exercise the combining logic).

    python3 scripts/test_combine_bench.py
"""
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import combine_bench  # noqa: E402

DATA = os.path.join(HERE, "testdata", "combine_bench")


def run(*argv):
    with tempfile.TemporaryDirectory() as tmp:
        out_json, out_md = os.path.join(tmp, "r.json"), os.path.join(tmp, "r.md")
        stdout = io.StringIO()
        with redirect_stdout(stdout):
            rc = combine_bench.main(list(argv) + ["--json", out_json, "--md", out_md])
        with open(out_json, encoding="utf-8") as f:
            rows = json.load(f)
        with open(out_md, encoding="utf-8") as f:
            md = f.read()
    return rc, rows, md, stdout.getvalue()


def data(name):
    return os.path.join(DATA, name)


ALL = ["--ours", "default=" + data("ours_default.json"), "--ours", "low-vram=" + data("ours_low_vram.json"),
       "--diffusers", data("diffusers_default.json"), "--diffusers", data("diffusers_low_vram.json")]


class CombineTest(unittest.TestCase):
    def test_rows_pair_ours_with_diffusers_per_mode_and_size(self):
        rc, rows, md, out = run(*ALL)
        self.assertEqual(rc, 0)
        keys = [(r["mode"], r["width"], r["height"], r["steps"]) for r in rows]
        self.assertEqual(keys, [("default", 1024, 1024, 8), ("default", 2048, 2048, 8),
                                ("low-vram", 1024, 1024, 8), ("low-vram", 2048, 2048, 8)])
        first = rows[0]
        # The warm-up job (9 s, 30 GiB) is excluded; compile rows are a separate column.
        self.assertEqual((first["ours_s"], first["diffusers_s"], first["ratio"]), (1.0, 2.0, 2.0))
        self.assertAlmostEqual(first["ours_peak_gib"], 20.0, places=6)
        self.assertEqual((first["diffusers_peak_gib"], first["diffusers_reserved_gib"]), (22.0, 24.0))
        self.assertEqual((first["diffusers_compile_s"], first["ratio_compile"]), (1.0, 1.0))
        self.assertEqual(rows[1]["ratio_compile"], 1.25)
        for r in rows:
            self.assertEqual((r["card"], r["commit"], r["date"]), ("FAKE GPU 80GB", "fake0000", "2026-01-01T00:00:00Z"))
            for field in ("card", "mode", "width", "height", "steps", "ours_s", "diffusers_s", "ratio",
                          "ours_peak_gib", "diffusers_peak_gib", "date", "commit"):
                self.assertIn(field, r)
        self.assertIn("| 1024×1024 | 8 | default | 1.00 | 2.00 | 2.00 | 20.0 | 24.5 | 22.0 | 1.00 | 1.00 |", md)
        self.assertIn("1024×1024", out)

    def test_failures_are_reported_not_numbers(self):
        _, rows, _, _ = run(*ALL)
        oom = rows[3]
        self.assertIsNone(oom["ours_s"])
        self.assertIsNone(oom["diffusers_s"])
        self.assertIsNone(oom["ratio"])
        self.assertEqual(oom["notes"], "ours: out_of_memory; diffusers: OOM")

    def test_one_side_only(self):
        _, rows, md, _ = run("--diffusers", data("diffusers_default.json"), "--card", "X", "--commit", "c")
        self.assertEqual(len(rows), 2)
        self.assertTrue(all(r["ours_s"] is None and r["notes"] == "ours: not run" for r in rows))
        self.assertIn("# zimage-tui vs diffusers on X", md)

    def test_parity_section(self):
        parity = {"fixture": "/tmp/zfull", "device": "cuda", "dtype": "bf16", "rel_tol": 0.02, "min_psnr_db": 30.0,
                  "pass": False, "rows": [
                      {"stage": "dit.out", "shape": [16, 1, 126, 98], "rel_l2": 0.03, "rel_max": 0.05,
                       "psnr_db": None, "checked": True, "pass": False},
                      {"stage": "pipe.latents.3", "shape": [1, 16, 128, 128], "rel_l2": 0.001, "rel_max": 0.002,
                       "psnr_db": None, "checked": False, "pass": True},
                      {"stage": "pipe.image_u8", "shape": [], "rel_l2": None, "rel_max": None, "psnr_db": 35.5,
                       "checked": True, "pass": True}]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(parity, f)
        try:
            _, _, md, _ = run(*ALL, "--parity", f.name)
        finally:
            os.remove(f.name)
        self.assertIn("**FAIL**", md)
        self.assertIn("| dit.out | 3.00e-02 | 5.00e-02 | – | FAIL |", md)
        self.assertIn("| pipe.image_u8 | – | – | 35.50 | ok |", md)
        self.assertNotIn("pipe.latents.3", md)

    def test_bad_mode_is_a_clear_error(self):
        with self.assertRaises(SystemExit), redirect_stdout(io.StringIO()), \
                open(os.devnull, "w") as devnull, redirect_stderr(devnull):
            combine_bench.main(["--ours", "fast=" + data("ours_default.json")])


if __name__ == "__main__":
    unittest.main()
