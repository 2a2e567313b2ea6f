#!/usr/bin/env bash
# The GPU checks CI cannot run (it has no GPU), unattended on a lent CUDA machine:
#   bash benchmarks/gpu_check.sh OUT_DIR [SECONDS] [all|predict|train]     (defaults: 560, all)
# A lent GPU comes with 15 minutes of device time in all, machine start included, and goes back 30 s after a
# call ends: `all` runs both sections in one call (predict gets the first half of SECONDS, train the rest).
# Before the call, on the developer's machine (../shared does not travel with the checkout):
#   echo /.gpu_shared/ >> .git/info/exclude; mkdir -p .gpu_shared/reference
#   cp -r ../shared/reference/golden .gpu_shared/reference/; cp -r ../shared/data .gpu_shared/
# and name `.gpu_shared` in the call's carry: this script links ../shared to it when ../shared is missing.
# predict:
#   1. unit: the CUDA-aware tests (CUDA golden parity in fp32, device postprocessing bit for bit, the
#      measured bytes per pixel of each precision against CUDA_BYTES_PER_PIXEL, pooling, lean forward);
#   2. bench: benchmarks/bench_gpu.py: predict 1024²/4096² vs the reference path at TF32 (medians, first-call
#      and compile cost, peak memory, |Δα|), then folders of 100 x 1024² and 20 x 4096² (images/s, GPU busy);
#   3. accuracy: the quickstart trained on the GPU, then benchmarks/bf16_accuracy.py on its best checkpoint:
#      bf16 (eager and compiled) and tf32 vs IEEE fp32, mean |Δα| and SAD change;
#   4. cold CLI: `dim predict` on one 4096² image, process start to file, default (tf32) and --precision bf16.
# train:
#   5. --amp training and --resume of it without --amp (bf16: no GradScaler on Ampere+; the resumed run gets
#      channels-last Adam moments in NCHW parameters), nccl on one process;
#   6. benchmarks/bench_gpu_train.py: the stage-1 step at batch 1 and 16 against the reference's train_step at
#      TF32 (ours, --amp, --compile), then tools/train.py on 1080x1440 synthetic images with the config's 4 data
#      workers, per iteration against the step alone.
# Every step has a time limit and each section a deadline: steps that would start after it are skipped.
# Runs from the checkout without installing it (PYTHONPATH=src; the C metric kernels are built in place).
# OUT_DIR gets the benchmark tables, summary.log and logs.tgz (every step's whole log): at most 8 files, as
# the device tool brings back.
set -uo pipefail
OUT_DIR=${1:?usage: $0 OUT_DIR [SECONDS] [all|predict|train]}
BUDGET=${2:-560}
SECTION=${3:-all}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG_DIR=$(mktemp -d /tmp/gpu_check_logs.XXXX)
REPO=$PWD
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v python >/dev/null; then  # images that only have python3: the tools and scripts call python
    mkdir -p /tmp/gpu_check_bin && ln -sf "$(command -v python3)" /tmp/gpu_check_bin/python
    export PATH="/tmp/gpu_check_bin:$PATH"
fi

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log to LOG_DIR/NAME.log, report rc and time
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped (deadline)"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local tick=$SECONDS
    timeout "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc in $((SECONDS - tick)) s"
    tail -n "${TAIL_LINES:-8}" "$LOG_DIR/$name.log"
    tar czf "$OUT_DIR/logs.tgz" -C "$LOG_DIR" .
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
    python setup.py -q build_ext --inplace >"$LOG_DIR/build_ext.log" 2>&1 \
        || { echo "building the C metric kernels failed (validation and SAD will fail):"; tail -n 5 "$LOG_DIR/build_ext.log"; }
    python -c "import cv2, numpy, tqdm, dimatting, dimatting._metrics_c; print('imports ok', dimatting.__file__)"
}

predict() {
    step unit 45 python -m pytest -q -p no:cacheprovider tests/test_pooling.py tests/test_lean_forward.py \
        tests/test_accel.py tests/test_inference.py -k "cuda or lean or pool or postprocessing or accel" -rs
    TAIL_LINES=40 step bench 130 python benchmarks/bench_gpu.py --sizes 1024 4096 --folder 100x1024 20x4096 \
        --budget-s 120 --out "$OUT_DIR/bench_gpu.md"
    local best
    mkdir -p /tmp/qsrun
    step quickstart 30 bash -c "cd /tmp/qsrun && python $REPO/tools/train.py $REPO/configs/dim/dim_quickstart.py \
--work-dir /tmp/qsrun/wd"
    best=$(ls /tmp/qsrun/wd/best_SAD_iter_*.pth 2>/dev/null | tail -n 1)
    if [ -n "$best" ]; then
        TAIL_LINES=12 step accuracy 30 python benchmarks/bf16_accuracy.py --checkpoint "$best" \
            --data /tmp/qsrun/data/synthetic --device cuda --compile --out "$OUT_DIR/accuracy.md"
    else
        echo "== accuracy: skipped (the quickstart left no best checkpoint)"
    fi
    step cli_inputs 12 python - <<'PY'
import sys
from pathlib import Path

import cv2

sys.path.insert(0, "benchmarks")
from bench_gpu import inputs, stage3_checkpoint

merged, trimap = inputs(4096)
cv2.imwrite("/tmp/m4k.png", merged)
cv2.imwrite("/tmp/t4k.png", trimap)
stage3_checkpoint(Path("/tmp/stage3.pth"))
PY
    local precision
    for precision in tf32 bf16; do
        step "cli_4k_$precision" 15 bash -c "TIMEFORMAT='process start to file written: %R s'; time python -m \
dimatting.cli predict --image /tmp/m4k.png --trimap /tmp/t4k.png --checkpoint /tmp/stage3.pth \
-o /tmp/a4k_$precision.png --device cuda --precision $precision"
    done
}

train() {
    local options=(quickstart.test=False train_cfg.val_interval=1000 default_hooks.checkpoint.interval=30)
    step amp 35 python tools/train.py configs/dim/dim_quickstart.py --amp --work-dir /tmp/amp \
        --cfg-options train_cfg.max_iters=60 "${options[@]}"
    step resume_without_amp 25 python tools/train.py configs/dim/dim_quickstart.py --work-dir /tmp/amp --resume \
        --cfg-options train_cfg.max_iters=90 "${options[@]}"
    step ddp_nccl 30 ./tools/dist_train.sh configs/dim/dim_quickstart.py 1 --work-dir /tmp/ddp \
        --cfg-options train_cfg.max_iters=30 "${options[@]}"
    local left=$((DEADLINE - SECONDS))
    TAIL_LINES=30 step train_bench "$left" python benchmarks/bench_gpu_train.py --iters 30 \
        --budget-s $((left - 10)) --out "$OUT_DIR/bench_gpu_train.md"
}

main() {
    local start=$SECONDS
    DEADLINE=$((start + BUDGET))
    setup
    case "$SECTION" in
        all)
            DEADLINE=$((start + BUDGET / 2))
            predict
            DEADLINE=$((start + BUDGET))
            train
            ;;
        predict) predict ;;
        train) train ;;
        *) echo "unknown section $SECTION: use all, predict or train" >&2; return 2 ;;
    esac
    echo "gpu_check: done in $((SECONDS - start)) s"
}

main 2>&1 | tee "$OUT_DIR/summary.log"
