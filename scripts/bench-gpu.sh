#!/usr/bin/env bash
# One-call GPU benchmark (issue 5): zimage-tui vs diffusers on the same card, same shapes.
#
#   scripts/bench-gpu.sh [--bin DIR] [--wheels DIR] [--sizes 1024x1024,2048x2048] [--steps 8]
#                        [--compile] [--parity] [--skip-bench] [--budget SECONDS]
#
# Runs, each under its own time limit and all inside --budget (default 570 s, for a 10-minute
# command limit; a part that no longer fits is skipped and says so):
#   nvidia-smi; DIR/kernel_check; `zimage-tui bench --random-weights --preset turbo` (sweep over
#   --sizes, --steps, one warm-up per size) in default and --low-vram mode;
#   scripts/diffusers_bench.py on the same shapes in default (optionally + --compile) and
#   low-vram mode; with --parity, the full-size bf16 parity (make_fixtures.py --full-size writes
#   ~25 GB to $PARITY_DIR, default /tmp/zfull, then DIR/gpu_parity).
# Then scripts/combine_bench.py prints one table and writes, under $OUT (default ./bench-out):
#   bench-gpu.json  rows: card, mode, width, height, steps, ours_s, diffusers_s, ratio,
#                   ours_peak_gib, diffusers_peak_gib, date, commit (+ compile column, notes)
#   bench-gpu.md    the table (+ parity table with --parity)
#   bench-gpu.log   everything printed
#   parity.json     gpu_parity's report (with --parity)
#   cold-start.json process start → first 1024² image from the parity checkpoint dir (with --parity)
#   raw-reports.tar.gz  every raw report (zimage-tui report.json/md, diffusers JSON, logs)
# Needs: DIR/{zimage-tui,kernel_check,gpu_parity} built with --features cudnn (or DIR.tar.xz
# holding DIR/, unpacked when DIR is missing), the diffusers
# wheels in --wheels (installed with pip --no-index into /tmp/site), python3 with torch.
# Set COMMIT=... to name the commit the binaries were built from (else: from zimage-tui's report);
# SKIP_DIFFUSERS_LOW_VRAM=1 leaves out diffusers' low-VRAM run (it has not finished in 150 s).
# CPU smoke test of the script itself (tiny shapes, no GPU): BENCH_DEVICE=cpu BENCH_PRESET=demo
# DIFFUSERS_RANDOM=tiny PARITY_DIR=tests/fixtures PARITY_DTYPE=f32 with --sizes 64x64 --steps 2.
set -uo pipefail

BIN=gpu-bin
WHEELS=.whl
SIZES=1024x1024,2048x2048
STEPS=8
COMPILE=0
PARITY=0
BENCH=1
BUDGET=570
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --compile) COMPILE=1; shift ;;
        --parity) PARITY=1; shift ;;
        --skip-bench) BENCH=0; shift ;;
        --budget) BUDGET=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

DEVICE=${BENCH_DEVICE:-cuda}
PRESET=${BENCH_PRESET:-turbo}
DRANDOM=${DIFFUSERS_RANDOM:-full}
PDTYPE=${PARITY_DTYPE:-bf16}
OUT=${OUT:-$PWD/bench-out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/bench-gpu.XXXXXX)
LOG=$OUT/bench-gpu.log
: > "$LOG"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
START=$SECONDS
STATUS=()

say() { echo "== $* (t=$((SECONDS - START)) s)" | tee -a "$LOG"; }

# run_part NAME LIMIT_S CMD...: runs CMD under min(LIMIT_S, what is left of the budget), output
# teed into the log; records NAME's status. Skips it when less than 20 s would be left.
run_part() {
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET - (SECONDS - START) - 15))
    if [ "$left" -lt 20 ]; then
        say "$name: SKIPPED (budget spent)"; STATUS+=("$name: skipped (budget)"); return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name (limit ${limit} s): $*"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=$?
    case $rc in
        0) STATUS+=("$name: ok") ;;
        124|137) STATUS+=("$name: TIMED OUT after ${limit} s") ;;
        *) STATUS+=("$name: exit $rc") ;;
    esac
    say "$name: exit $rc"
}

say "bench-gpu.sh sizes=$SIZES steps=$STEPS compile=$COMPILE parity=$PARITY bench=$BENCH budget=${BUDGET}s"
nvidia-smi 2>&1 | tee -a "$LOG"
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
# The device copy carries at most 64 MiB: the binaries may come packed as DIR.tar.xz.
if [ ! -d "$BIN" ] && [ -f "$BIN.tar.xz" ]; then
    say "unpacking $BIN.tar.xz"; tar -xJf "$BIN.tar.xz" -C "$(dirname "$BIN")" 2>&1 | tee -a "$LOG"
fi
for b in zimage-tui kernel_check gpu_parity; do
    [ -x "$BIN/$b" ] || { echo "missing executable $BIN/$b" | tee -a "$LOG"; }
done

if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    run_part pip-install 120 python3 -m pip install -q --no-index --no-deps --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
else
    say "no wheels in $WHEELS: using the python3 environment as it is"
fi
timeout 120 python3 -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__)' 2>&1 | tee -a "$LOG"

run_part kernel_check 60 "$BIN/kernel_check"

OURS_ARGS=()
DIFF_ARGS=()
if [ "$BENCH" = 1 ]; then
    for mode in default low-vram; do
        flag=(); [ "$mode" = low-vram ] && flag=(--low-vram)
        run_part "zimage-tui bench $mode" 150 "$BIN/zimage-tui" bench --random-weights --preset "$PRESET" \
            --device "$DEVICE" --mode sweep --sizes "$SIZES" --steps "$STEPS" --warmup 1 "${flag[@]}" \
            --out "$WORK/ours-$mode"
        [ -f "$WORK/ours-$mode/report.json" ] && OURS_ARGS+=(--ours "$mode=$WORK/ours-$mode/report.json")
    done
    # diffusers_bench.py sizes are HEIGHTxWIDTH, ours WIDTHxHEIGHT: swap each pair.
    DSIZES=$(echo "$SIZES" | tr ',' '\n' | awk -Fx '{print $2 "x" $1}' | paste -sd, -)
    compile=(); [ "$COMPILE" = 1 ] && compile=(--compile)
    run_part "diffusers default" $((COMPILE ? 240 : 150)) python3 scripts/diffusers_bench.py --device "$DEVICE" \
        --random "$DRANDOM" --sizes "$DSIZES" --steps "$STEPS" --reps 3 "${compile[@]}" --out "$WORK/diffusers-default.json"
    if [ "${SKIP_DIFFUSERS_LOW_VRAM:-0}" = 1 ]; then
        say "diffusers low-vram: skipped (SKIP_DIFFUSERS_LOW_VRAM=1)"
    else
        run_part "diffusers low-vram" 150 python3 scripts/diffusers_bench.py --device "$DEVICE" --low-vram \
            --random "$DRANDOM" --sizes "$DSIZES" --steps "$STEPS" --reps 3 --out "$WORK/diffusers-low-vram.json"
    fi
    for f in "$WORK"/diffusers-*.json; do [ -f "$f" ] && DIFF_ARGS+=(--diffusers "$f"); done
fi

PARITY_ARGS=()
if [ "$PARITY" = 1 ]; then
    PARITY_DIR=${PARITY_DIR:-/tmp/zfull}
    if [ -f "$PARITY_DIR/reference.json" ]; then
        say "reusing the full-size fixture in $PARITY_DIR"
    else
        run_part make_fixtures 300 python3 scripts/make_fixtures.py --full-size --dtype bf16 --device cuda \
            --out "$PARITY_DIR"
    fi
    run_part gpu_parity 200 "$BIN/gpu_parity" "$PARITY_DIR" --device "$DEVICE" --dtype "$PDTYPE" \
        --json "$OUT/parity.json"
    [ -f "$OUT/parity.json" ] && PARITY_ARGS+=(--parity "$OUT/parity.json")
    # Cold start (issue 5): a fresh process, local checkpoint directory → first 1024² image; once
    # with the page cache dropped (where allowed) after timing a plain read of the weight files
    # (the disk's own speed), once with the files cached (a tool started again).
    if [ -d "$PARITY_DIR/model" ]; then
        drop_cache() { sync; (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null && echo dropped || echo maybe-cached; }
        CACHE=$(drop_cache)
        t0=$(date +%s.%N)
        BYTES=$(find -L "$PARITY_DIR/model" -name '*.safetensors' -print0 | xargs -0 cat | wc -c)
        t1=$(date +%s.%N)
        READ_S=$(python3 -c "print(round($t1 - $t0, 3))")
        say "cold start: read $BYTES bytes of weights in $READ_S s (page cache $CACHE)"
        cold_gen() {
            local name=$1 cache=$2 t0 t1
            t0=$(date +%s.%N)
            run_part "$name" 120 "$BIN/zimage-tui" gen --model "$PARITY_DIR/model" --prompt "a lighthouse at dusk" \
                --seed 1 --device "$DEVICE" --out "$WORK/$name.png" --json
            t1=$(date +%s.%N)
            python3 -c "import json,sys; json.dump({'process_to_image_s': $t1 - $t0, 'page_cache': '$cache'}, sys.stdout)"
        }
        CACHE=$(drop_cache)
        DROPPED=$(cold_gen cold-start-dropped "$CACHE" | tail -1)
        CACHED=$(cold_gen cold-start-cached cached | tail -1)
        python3 -c "import json,sys; json.dump({'card': '$CARD', 'weight_bytes': $BYTES, 'plain_read_s': $READ_S, 'read_page_cache': '$CACHE', 'dropped': $DROPPED, 'cached': $CACHED}, sys.stdout, indent=1)" \
            > "$OUT/cold-start.json" 2>>"$LOG"
        say "cold start: $(cat "$OUT/cold-start.json")"
    fi
fi

if [ $((${#OURS_ARGS[@]} + ${#DIFF_ARGS[@]} + ${#PARITY_ARGS[@]})) -gt 0 ]; then
    commit=(); [ -n "${COMMIT:-}" ] && commit=(--commit "$COMMIT")
    card=(); [ -n "$CARD" ] && card=(--card "$CARD")
    say "combined table"
    python3 scripts/combine_bench.py "${OURS_ARGS[@]}" "${DIFF_ARGS[@]}" "${PARITY_ARGS[@]}" "${card[@]}" \
        "${commit[@]}" --json "$OUT/bench-gpu.json" --md "$OUT/bench-gpu.md" 2>&1 | tee -a "$LOG"
    STATUS+=("combine: exit $?")
fi

say "summary"
printf '  %s\n' "${STATUS[@]}" | tee -a "$LOG"
cp "$LOG" "$WORK/bench-gpu.log" 2>/dev/null
tar -czf "$OUT/raw-reports.tar.gz" -C "$WORK" --exclude='*.png' . 2>/dev/null
rm -rf "$WORK"
# Non-zero when any part failed, so the caller sees it.
printf '%s\n' "${STATUS[@]}" | grep -qv ': ok$' && exit 1
exit 0
