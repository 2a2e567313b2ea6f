#!/usr/bin/env bash
# The GPU checks CI cannot run (it has no GPU), in one pass on a lent CUDA machine:
#   bash benchmarks/gpu_check.sh OUT_DIR [SECONDS]
# 1. the CUDA-aware unit tests (the CUDA golden-parity test runs instead of skipping; --cutout tests are left
#    out: pymatting is not on the lent machines' image);
# 2. benchmarks/bench_gpu.py (predict and train step vs the reference path on the same GPU);
# 3. --amp (fp16 autocast + GradScaler) training, then --resume of that run;
# 4. ./tools/dist_train.sh / dist_test.sh with nccl (one process per GPU), and the clear error for more
#    processes than GPUs;
# 5. `dim predict --device cuda` on a 4096x4096 image (tiled), as a user runs it (process start to file);
# 6. the quickstart trained and tested on the GPU (fp32), timed.
# Needs ../shared beside the checkout (golden weights and samples) and the package installed (`dim` on PATH).
# Each step has a time limit and the whole pass a deadline (SECONDS, default 520): steps that would start
# after it are skipped. Logs go to OUT_DIR; the summary (rc, seconds, last lines of each step) to stdout.
set -uo pipefail
OUT_DIR=${1:?usage: $0 OUT_DIR [SECONDS]}
DEADLINE=$((SECONDS + ${2:-520}))
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
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
    tail -n 8 "$OUT_DIR/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
step unit 120 python -m pytest -q -p no:cacheprovider tests/test_inference.py tests/test_models.py \
    tests/test_engine_trainer.py tests/test_engine_launch.py tests/test_checkpoint.py -k "not cutout"
step bench 150 python benchmarks/bench_gpu.py --sizes 1024 2048 4096 --runs 5 --out "$OUT_DIR/bench_gpu.md"
step amp 90 python tools/train.py configs/dim/dim_quickstart.py --amp --work-dir /tmp/amp \
    --cfg-options train_cfg.max_iters=100 quickstart.test=False
step amp_resume 90 python tools/train.py configs/dim/dim_quickstart.py --amp --work-dir /tmp/amp --resume \
    --cfg-options train_cfg.max_iters=200 quickstart.test=False
step ddp_nccl 90 ./tools/dist_train.sh configs/dim/dim_quickstart.py 1 --work-dir /tmp/ddp \
    --cfg-options train_cfg.max_iters=100 quickstart.test=False
step ddp_test 60 ./tools/dist_test.sh configs/dim/dim_quickstart.py /tmp/ddp/iter_100.pth 1 --work-dir /tmp/ddp
step ddp_two_on_one_gpu 45 ./tools/dist_train.sh configs/dim/dim_quickstart.py 2 --work-dir /tmp/ddp2 \
    --cfg-options train_cfg.max_iters=10 quickstart.test=False
python - <<'PY'
import sys
from pathlib import Path

import cv2

sys.path.insert(0, ".")
from dimatting.checkpoint import save_checkpoint
from tests.golden_weights import golden_model

golden = Path("../shared/reference/golden")
merged = cv2.imread(str(golden / "inputs/gt05_merged.png"))
trimap = cv2.imread(str(golden / "inputs/gt05_trimap.png"), cv2.IMREAD_GRAYSCALE)
cv2.imwrite("/tmp/m4k.png", cv2.resize(merged, (4096, 4096), interpolation=cv2.INTER_LINEAR))
cv2.imwrite("/tmp/t4k.png", cv2.resize(trimap, (4096, 4096), interpolation=cv2.INTER_NEAREST))
save_checkpoint("/tmp/stage3.pth", {"state_dict": golden_model(golden, 3).state_dict()})
PY
step predict_4k_cli 90 dim predict --image /tmp/m4k.png --trimap /tmp/t4k.png --checkpoint /tmp/stage3.pth \
    -o /tmp/a4k.png --device cuda
step quickstart 200 python tools/train.py configs/dim/dim_quickstart.py --work-dir /tmp/qs
grep -h "SAD" /tmp/qs/*/*.log 2>/dev/null | tail -n 3
