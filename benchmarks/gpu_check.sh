#!/usr/bin/env bash
# The GPU checks CI cannot run (it has no GPU), in unattended passes on a lent CUDA machine, < 8 minutes each:
#   bash benchmarks/gpu_check.sh OUT_DIR [SECONDS] [predict|train]     (default: predict)
# A lent GPU comes with 15 minutes of device time in all: run `predict` in one call and `train` in the next.
# predict:
#   1. env: the GPU, driver, torch/CUDA/cuDNN; the imports the checks need;
#   2. unit: the CUDA-aware tests (CUDA golden parity in fp32, device postprocessing bit for bit, the
#      measured bytes per pixel of each precision against CUDA_BYTES_PER_PIXEL, pooling, lean forward);
#   3. bench: benchmarks/bench_gpu.py: predict 1024²/4096² vs the reference path at TF32 (medians, first-call
#      and compile cost, peak memory, |Δα|), then folders of 100 x 1024² and 20 x 4096² (images/s, GPU busy);
#   4. accuracy: the quickstart trained on the GPU (~20 s), then benchmarks/bf16_accuracy.py on its best
#      checkpoint: bf16 (eager and compiled) and tf32 vs IEEE fp32, mean |Δα| and SAD change;
#   5. cold CLI: `dim predict` on one 4096² image, process start to file, default (tf32) and --precision bf16.
# train:
#   6. benchmarks/bench_gpu_train.py: the stage-1 step at batch 1 and 16 against the reference's train_step at
#      TF32 (ours, --amp, --compile), then tools/train.py on 1080x1440 synthetic images with the config's 4 data
#      workers, per iteration against the step alone;
#   7. --amp training and --resume of it (bf16: no GradScaler on Ampere+), nccl DDP on one process.
# Every step has a time limit and the pass a deadline (SECONDS, default 450): steps that would start after it
# are skipped. Needs ../shared beside the checkout for the golden weights (synthetic stand-ins otherwise).
# Runs from the checkout without installing it (PYTHONPATH=src); logs go to OUT_DIR, a summary to stdout.
set -uo pipefail
OUT_DIR=${1:?usage: $0 OUT_DIR [SECONDS] [predict|train]}
DEADLINE=$((SECONDS + ${2:-450}))
SECTION=${3:-predict}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
step() {  # step NAME LIMIT COMMAND...: run with a time limit, log to OUT_DIR/NAME.log, report rc and time
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 20 ]; then
        echo "== $name: skipped (deadline)"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local tick=$SECONDS
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc=$rc in $((SECONDS - tick)) s"
    tail -n "${TAIL_LINES:-8}" "$OUT_DIR/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', \
torch.backends.cudnn.version(), torch.cuda.is_available())"
python -c "import cv2, numpy, tqdm, dimatting; print('imports ok', dimatting.__file__)"

predict() {
step unit 75 python -m pytest -q -p no:cacheprovider tests/test_pooling.py tests/test_lean_forward.py \
    tests/test_accel.py tests/test_inference.py -k "cuda or lean or pool or postprocessing or accel" -rs
TAIL_LINES=40 step bench 230 python benchmarks/bench_gpu.py --sizes 1024 4096 --folder 100x1024 20x4096 \
    --budget-s 215 --out "$OUT_DIR/bench_gpu.md"
local repo=$PWD best precision
mkdir -p /tmp/qsrun
step quickstart 45 bash -c "cd /tmp/qsrun && python $repo/tools/train.py $repo/configs/dim/dim_quickstart.py \
--work-dir /tmp/qsrun/wd"
best=$(ls /tmp/qsrun/wd/best_SAD_iter_*.pth 2>/dev/null | tail -n 1)
[ -n "$best" ] && TAIL_LINES=12 step accuracy 50 python benchmarks/bf16_accuracy.py --checkpoint "$best" \
    --data /tmp/qsrun/data/synthetic --device cuda --compile --out "$OUT_DIR/accuracy.md"
python - <<'PY' >"$OUT_DIR/cli_inputs.log" 2>&1
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
for precision in tf32 bf16; do
    step "cli_4k_$precision" 25 bash -c "TIMEFORMAT='process start to file written: %R s'; time python -m \
dimatting.cli predict --image /tmp/m4k.png --trimap /tmp/t4k.png --checkpoint /tmp/stage3.pth \
-o /tmp/a4k_$precision.png --device cuda --precision $precision"
done
}

train() {
TAIL_LINES=30 step train_bench 330 python benchmarks/bench_gpu_train.py --iters 30 --budget-s 300 \
    --out "$OUT_DIR/bench_gpu_train.md"
step amp 45 python tools/train.py configs/dim/dim_quickstart.py --amp --work-dir /tmp/amp \
    --cfg-options train_cfg.max_iters=60 quickstart.test=False
step amp_resume 45 python tools/train.py configs/dim/dim_quickstart.py --amp --work-dir /tmp/amp --resume \
    --cfg-options train_cfg.max_iters=100 quickstart.test=False
step ddp_nccl 45 ./tools/dist_train.sh configs/dim/dim_quickstart.py 1 --work-dir /tmp/ddp \
    --cfg-options train_cfg.max_iters=60 quickstart.test=False
}

case "$SECTION" in
    predict) predict ;;
    train) train ;;
    *) echo "unknown section $SECTION: use predict or train" >&2; exit 2 ;;
esac
