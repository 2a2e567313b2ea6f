"""Training and testing engine: what `tools/train.py` and `tools/test.py` run.

Modules, one job each: `launch` (the tools' command lines), `runconfig` (the command line's choices and the
config values training reads, `TrainSettings`), `state` (`TrainState`, the checkpoint's own section),
`trainer` (the iteration loop: `train_step`, `validate_and_save`), `evaluation` (the val/test pass), `tester`
(tools/test.py), `sampler` (the seeded, resumable data order), `checkpointing` (files of a run, resume with
fallback), `preemption` (SIGTERM/SIGINT), `weights` (where starting weights come from), `dist` (torchrun and
SLURM process groups), `logging` (reference-style log lines and JSON scalars), `quickstart` (the quickstart's
data and its trivial-matte baseline).
"""
