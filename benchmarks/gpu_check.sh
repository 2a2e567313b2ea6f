#!/usr/bin/env bash
# The GPU checks CI cannot run (it has no GPU), unattended on a lent CUDA machine, in one call:
#   bash benchmarks/gpu_check.sh OUT_DIR [SECONDS]     (default 575: a call may run 600 s)
# A lent GPU comes with 15 minutes of device time in all, machine start included, and goes back 30 s after a
# call ends, so everything runs in one call, most telling first; each step has a time limit and steps that
# would start after the deadline are skipped.
# Before the call, on the developer's machine (../shared does not travel with the checkout; .gitignore keeps
# this copy out of the repo):
#   mkdir -p .gpu_shared/reference && cp -r ../shared/reference/golden .gpu_shared/reference/ && cp -r ../shared/data .gpu_shared/
# and name `.gpu_shared` in the call's carry: this script links ../shared to it when ../shared is missing.
#   1. unit: the CUDA-aware tests (CUDA golden parity in fp32, device postprocessing bit for bit, the
#      measured bytes per pixel of each precision against CUDA_BYTES_PER_PIXEL, pooling, lean forward);
#   2. predict: benchmarks/bench_gpu.py at 1024² and 4096² against the reference path at TF32: the default
#      (TF32), bf16 eager and compiled (medians, first-call and compile cost, peak memory, |Δα|);
#   3. train_bench: benchmarks/bench_gpu_train.py: the stage-1 step at batch 1 and 16 against the reference's
#      train_step at TF32 (ours, --amp; --compile if time is left), then tools/train.py on 1080x1440
#      synthetic images with the config's 4 data workers, per iteration against the step alone;
#   4. amp, resume_without_amp, ddp_nccl: --amp training, its --resume without --amp (bf16: no GradScaler on
#      Ampere+; the resumed run gets channels-last Adam moments in NCHW parameters), nccl on one process;
#   5. quickstart, accuracy: the quickstart trained on the GPU, then benchmarks/bf16_accuracy.py on its best
#      checkpoint: bf16 and tf32 vs IEEE fp32, mean |Δα| and SAD change;
#   6. folders: bench_gpu.py's folders of 100 x 1024² and 20 x 4096² (images/s, GPU busy share);
#   7. cli_4k: `dim predict` on one 4096² image, process start to file written, default precision.
# Runs from the checkout without installing it (PYTHONPATH=src; the C metric kernels are built in place).
# OUT_DIR gets the benchmark tables, summary.log and logs.tgz (every step's whole log): at most 8 files, as
# the device tool brings back. Work folders are fresh each call; the exit status is 1 if any step failed.
set -uo pipefail
OUT_DIR=${1:?usage: $0 OUT_DIR [SECONDS]}
BUDGET=${2:-575}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d /tmp/gpu_check.XXXX)  # nothing of an earlier call on a warm machine is picked up
LOG_DIR=$WORK/logs
mkdir -p "$LOG_DIR"
REPO=$PWD
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v python >/dev/null; then  # images that only have python3: the tools and scripts call python
    mkdir -p "$WORK/bin" && ln -sf "$(command -v python3)" "$WORK/bin/python"
    export PATH="$WORK/bin:$PATH"
fi
FAILED=()
BUDGET_MARGIN_S=10  # a benchmark's own --budget-s ends this long before its step's time limit

capped() {  # capped LIMIT: LIMIT, or the seconds left before the deadline if fewer
    local left=$((DEADLINE - SECONDS))
    echo $((left < $1 ? left : $1))
}

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log to LOG_DIR/NAME.log, report rc and time
    local name=$1 want=$2 limit
    limit=$(capped "$want")
    shift 2
    if [ "$limit" -lt $((want < 20 ? want : 20)) ]; then
        echo "== $name: skipped (deadline)"
        return
    fi
    local tick=$SECONDS
    timeout -k 10 "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1  # -k: a process stuck in a CUDA call ignores TERM
    local rc=$?
    [ "$rc" -eq 0 ] || FAILED+=("$name")
    echo "== $name: rc=$rc in $((SECONDS - tick)) s"
    tail -n "${TAIL_LINES:-8}" "$LOG_DIR/$name.log"
    tar czf "$OUT_DIR/.logs.tgz.tmp" -C "$LOG_DIR" . && mv -f "$OUT_DIR/.logs.tgz.tmp" "$OUT_DIR/logs.tgz"
}

bench_step() {  # bench_step NAME LIMIT COMMAND...: a step whose command takes --budget-s, ending before the limit
    local name=$1 limit
    limit=$(capped "$2")
    shift 2
    step "$name" "$limit" "$@" --budget-s $((limit - BUDGET_MARGIN_S))
}

setup() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', \
torch.backends.cudnn.version(), torch.cuda.is_available())"
    if [ ! -e ../shared ] && [ -d .gpu_shared ]; then
        ln -s "$REPO/.gpu_shared" ../shared || echo "could not link ../shared: golden-based tests will skip"
    fi
    [ -d ../shared/reference/golden ] || echo "no ../shared/reference/golden: golden tests skip, benchmarks \
use synthetic stand-ins"
    timeout -k 5 90 python setup.py -q build_ext --inplace >"$LOG_DIR/build_ext.log" 2>&1 \
        || { echo "building the C metric kernels failed (validation and SAD will fail):"; tail -n 5 "$LOG_DIR/build_ext.log"; }
    python -c "import cv2, numpy, tqdm, dimatting, dimatting._metrics_c; print('imports ok', dimatting.__file__)"
}

checks() {
    step unit 35 python -m pytest -q -p no:cacheprovider tests/test_pooling.py tests/test_lean_forward.py \
        tests/test_accel.py tests/test_inference.py -k "cuda or lean or pool or postprocessing or accel" -rs
    TAIL_LINES=20 bench_step predict 175 python benchmarks/bench_gpu.py --sizes 1024 4096 --folder \
        --modes reference-tf32 ours ours-bf16 ours-bf16-compiled --out "$OUT_DIR/bench_gpu.md"
    TAIL_LINES=30 bench_step train_bench 165 python benchmarks/bench_gpu_train.py --iters 30 \
        --out "$OUT_DIR/bench_gpu_train.md"
    local options=(quickstart.test=False train_cfg.val_interval=1000 default_hooks.checkpoint.interval=30)
    step amp 30 python tools/train.py configs/dim/dim_quickstart.py --amp --work-dir "$WORK/amp" \
        --cfg-options train_cfg.max_iters=60 "${options[@]}"
    step resume_without_amp 20 python tools/train.py configs/dim/dim_quickstart.py --work-dir "$WORK/amp" \
        --resume --cfg-options train_cfg.max_iters=90 "${options[@]}"
    step ddp_nccl 25 ./tools/dist_train.sh configs/dim/dim_quickstart.py 1 --work-dir "$WORK/ddp" \
        --cfg-options train_cfg.max_iters=30 "${options[@]}"
    local quickstart=$WORK/quickstart best
    mkdir -p "$quickstart"
    step quickstart 25 bash -c 'cd "$1" && python "$2/tools/train.py" "$2/configs/dim/dim_quickstart.py" --work-dir wd' \
        quickstart "$quickstart" "$REPO"
    best=$(ls "$quickstart"/wd/best_SAD_iter_*.pth 2>/dev/null | tail -n 1)
    if [ -n "$best" ]; then
        TAIL_LINES=12 bench_step accuracy 25 python benchmarks/bf16_accuracy.py --checkpoint "$best" \
            --data "$quickstart/data/synthetic" --device cuda --out "$OUT_DIR/accuracy.md"
    else
        echo "== accuracy: skipped (the quickstart left no best checkpoint)"
    fi
    TAIL_LINES=12 bench_step folders 30 python benchmarks/bench_gpu.py --sizes --folder 100x1024 20x4096 \
        --out "$OUT_DIR/bench_gpu_folders.md"
    step cli_inputs 10 python - "$WORK" <<'PY'
import sys
from pathlib import Path

import cv2

sys.path.insert(0, "benchmarks")
from bench_gpu import inputs, stage3_checkpoint

work = Path(sys.argv[1])
merged, trimap = inputs(4096)
cv2.imwrite(str(work / "merged_4096.png"), merged)
cv2.imwrite(str(work / "trimap_4096.png"), trimap)
stage3_checkpoint(work / "stage3.pth")
PY
    step cli_4k 15 bash -c 'TIMEFORMAT="process start to file written: %R s"; time python -m dimatting.cli \
predict --image "$1/merged_4096.png" --trimap "$1/trimap_4096.png" --checkpoint "$1/stage3.pth" \
-o "$1/alpha.png" --device cuda' cli "$WORK"
}

main() {
    local start=$SECONDS
    DEADLINE=$((start + BUDGET))
    setup
    checks
    echo "gpu_check: done in $((SECONDS - start)) s; failed steps: ${FAILED[*]:-none}"
    [ "${#FAILED[@]}" -eq 0 ]
}

main 2>&1 | tee "$OUT_DIR/summary.log"
