#!/usr/bin/env bash
# One command on a fresh CUDA machine with this repository: install what the GPU bench needs from the
# package registries, run the GPU tests and the whole engine benchmark (every speed and memory mode
# against diffusers fp16), then the text-conditioned families' benchmarks in what is left of the time, and
# print the summary tables. Results: bench/results/gpu-<gpu name>.json (+ .md), and per family
# bench/results/gpu-<gpu name>-<family>.json (+ .md).
#
#   bash bench/gpu.sh                  # everything, about 10 minutes on an H100/H200
#   BENCH_MODES=eager,compiled bash bench/gpu.sh
#   BENCH_SVD=0 BENCH_FAMILIES=ltx-video BENCH_FAMILY_STEPS=50 bash bench/gpu.sh   # LTX-Video alone
#
# Variables: PYTHON (default python3), VENV (default .venv-gpu; "none" installs into the current
# environment), TORCH_INDEX (default https://download.pytorch.org/whl/cu128), BENCH_MODES, BENCH_REPEATS
# (default 1), BENCH_WARM_START (default compiled), TIME_BUDGET_S (default 570: the whole script's
# budget; the bench is stopped, keeping the figures measured so far, when only TESTS_RESERVE_S, default
# 150, are left for the GPU tests).
# The families: BENCH_FAMILIES (default wan2.2-ti2v-5b,ltx-video; empty for none), BENCH_FAMILY_MODES
# (default all six), BENCH_FAMILY_STEPS (default 8: seconds per step do not depend on the count, and the
# results extrapolate the clip to the family's default steps; empty for those defaults), BENCH_FAMILY_WARM_START
# (default none: it costs a whole clip more). They run after SVD, each in an equal share of the time left
# before TESTS_RESERVE_S; a family whose share is under FAMILY_MIN_S (default 120) is skipped, saying so.
# SVD's benchmark alone fills the default budget, and a family's six modes (each contender builds a
# full-size model and makes a warm-up clip and a timed one) need minutes of their own, Wan 2.2 TI2V-5B's
# 1280x704x121 clips most of all: give the families their own run (BENCH_SVD=0) or fewer modes. BENCH_SVD
# defaults to auto: SVD's bench runs unless bench/results/gpu-<gpu name>.json is already committed, so a
# second lent GPU of a kind gives its whole budget to the families (1 or 0 force it either way).
set -euo pipefail

cd "$(dirname "$0")/.."
started=$(date +%s)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}
BENCH_MODES=${BENCH_MODES:-diffusers-fp16,eager,low,compiled,fast,fp8}
BENCH_REPEATS=${BENCH_REPEATS:-1}
BENCH_WARM_START=${BENCH_WARM_START:-compiled}
TIME_BUDGET_S=${TIME_BUDGET_S:-570}
TESTS_RESERVE_S=${TESTS_RESERVE_S:-150}
BENCH_SVD=${BENCH_SVD:-auto}  # auto: SVD unless its results for this GPU are already committed
BENCH_FAMILIES=${BENCH_FAMILIES-wan2.2-ti2v-5b,ltx-video}
BENCH_FAMILY_MODES=${BENCH_FAMILY_MODES:-diffusers,eager,low,compiled,fast,fp8}
BENCH_FAMILY_STEPS=${BENCH_FAMILY_STEPS-8}
BENCH_FAMILY_WARM_START=${BENCH_FAMILY_WARM_START:-}
FAMILY_MIN_S=${FAMILY_MIN_S:-120}

say() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))" >&2; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader >&2 || true

# 1. Install: the local engine's extra, torchao for fp8, pytest for the GPU tests. A CUDA build of torch
#    2.6 or newer that the machine already has is kept (GPU images ship one, and downloading another costs
#    minutes); otherwise torch is installed at the project's pinned version from PyTorch's CUDA index.
say "installing"
if [ "$VENV" != "none" ]; then
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
    PY="$VENV/bin/python"
else
    PY="$PYTHON"
fi
if ! "$PY" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(0 if v >= (2, 6) and torch.cuda.is_available() else 1)' 2>/dev/null; then
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet "torch==2.13.0" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple
fi
"$PY" -m pip install --quiet -e ".[local,fp8]" pytest pytest-xdist  # xdist: pyproject's addopts name its --dist
"$PY" - <<'EOF' >&2
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"capability {'.'.join(map(str, torch.cuda.get_device_capability(0)))}")
EOF

# 2. The benchmark first (its figures are the point), bounded so that TESTS_RESERVE_S are left for the
#    tests; it writes its JSON after every mode, so a stop keeps what was measured. SVD's bench alone fills
#    the default budget, so with BENCH_SVD=auto a GPU whose SVD results are already committed gives the
#    whole budget to the families instead: each lent GPU measures what is still missing.
gpu_slug=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-"))')
if [ "$BENCH_SVD" = "auto" ]; then
    if [ -f "bench/results/gpu-${gpu_slug}.json" ]; then
        BENCH_SVD=0
        say "SVD's results for this GPU are committed (bench/results/gpu-${gpu_slug}.json): the families get the time"
    else
        BENCH_SVD=1
    fi
fi
bench_status=0
if [ "$BENCH_SVD" != "0" ]; then
    left=$(( TIME_BUDGET_S - TESTS_RESERVE_S - ($(date +%s) - started) ))
    [ "$left" -ge 60 ] || left=60  # timeout 0 would mean "no limit"
    say "benchmark: modes $BENCH_MODES, ${left}s allowed"
    timeout --signal=INT --kill-after=30 "${left}" "$PY" bench/engine.py --modes "$BENCH_MODES" --repeats "$BENCH_REPEATS" \
        --warm-start "$BENCH_WARM_START" || bench_status=$?
fi

# 2b. The text-conditioned families, one process each, in equal shares of the time left before the tests.
IFS=',' read -r -a families <<< "$BENCH_FAMILIES"
ran_families=()
family_steps=()
[ -z "$BENCH_FAMILY_STEPS" ] || family_steps=(--steps "$BENCH_FAMILY_STEPS")
for i in "${!families[@]}"; do
    family=${families[$i]// /}
    [ -n "$family" ] || continue
    share=$(( (TIME_BUDGET_S - TESTS_RESERVE_S - ($(date +%s) - started)) / (${#families[@]} - i) ))
    if [ "$share" -lt "$FAMILY_MIN_S" ]; then
        say "benchmark of $family skipped: ${share}s left for it, under FAMILY_MIN_S=${FAMILY_MIN_S} (raise TIME_BUDGET_S or set BENCH_SVD=0)"
        continue
    fi
    say "benchmark of $family: modes $BENCH_FAMILY_MODES, steps ${BENCH_FAMILY_STEPS:-default}, ${share}s allowed"
    ran_families+=("$family")
    timeout --signal=INT --kill-after=30 "${share}" "$PY" bench/engine.py --family "$family" --modes "$BENCH_FAMILY_MODES" \
        --repeats "$BENCH_REPEATS" --warm-start "$BENCH_FAMILY_WARM_START" ${family_steps[@]+"${family_steps[@]}"} || bench_status=$?
done

# 3. GPU tests (they skip without CUDA; here they run), in what is left of the budget.
left=$(( TIME_BUDGET_S - ($(date +%s) - started) ))
[ "$left" -ge 60 ] || left=60
say "GPU tests, ${left}s allowed"
tests_status=0
timeout --kill-after=30 "${left}" "$PY" -m pytest -q -m gpu tests/engines -p no:cacheprovider || tests_status=$?

# 4. Summary.
say "summary"
summaries=()
[ "$BENCH_SVD" = "0" ] || summaries+=("bench/results/gpu-${gpu_slug}.md")
for family in ${ran_families[@]+"${ran_families[@]}"}; do
    summaries+=("bench/results/gpu-${gpu_slug}-${family}.md")
done
for summary in "${summaries[@]}"; do
    if [ -f "$summary" ]; then
        cat "$summary"
    else
        echo "no results file ($summary): the benchmark did not finish (exit $bench_status)"
    fi
    echo
done
echo
echo "GPU tests exit status: $tests_status; benchmark exit status: $bench_status; total $(( $(date +%s) - started )) s"
exit $(( tests_status != 0 || bench_status != 0 ))
