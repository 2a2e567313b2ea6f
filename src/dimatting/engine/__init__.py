"""Training and testing engine: what `tools/train.py` and `tools/test.py` run.

Modules, one job each: `launch` (the tools' command lines), `runconfig` (the config keys a run honours),
`trainer` (the iteration loop), `evaluation` (the val/test pass), `tester` (tools/test.py), `sampler`
(the seeded, resumable data order), `checkpointing` (files of a run), `weights` (where starting weights
come from), `dist` (torchrun process groups), `logging` (reference-style log lines and JSON scalars).
"""
