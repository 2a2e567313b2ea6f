"""Train a DIM model: `python tools/train.py CONFIG [--work-dir D] [--resume [CKPT]] [--amp] [--cfg-options ...]`.

Same arguments as mmagic's tools/train.py; the work lives in `dimatting.engine` (see docs/training.md).
"""

import sys

from dimatting.engine.launch import train_main

if __name__ == "__main__":
    sys.exit(train_main())
