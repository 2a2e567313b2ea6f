"""Test a DIM checkpoint: `python tools/test.py CONFIG CHECKPOINT [--save-path DIR] [--out results.json]`.

Same arguments as mmagic's tools/test.py plus `--save-path`; the work lives in `dimatting.engine`.
"""

import sys

from dimatting.engine.launch import test_main

if __name__ == "__main__":
    sys.exit(test_main())
