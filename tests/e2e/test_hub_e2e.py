"""The seed's test command with the released checkpoint given as a URL, a local server standing in for the
download host: `python tools/test.py CONFIG URL` scores exactly as the same file given by path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dimatting.data.synthetic import make_synthetic
from dimatting.models import build_dim
from tests.e2e.helpers import CONFIGS, STAGES, run_tool, tiny_stage_options
from tests.http_server import FileServer, save_hashed

pytestmark = pytest.mark.slow


def test_tools_test_with_a_checkpoint_url_scores_as_the_local_file(tmp_path: Path) -> None:
    make_synthetic(tmp_path / "data" / "tiny", n_train=1, n_test=2, seed=0, size=(64, 64))
    torch.manual_seed(0)
    state = build_dim(with_refiner=True).state_dict()
    # named like the released file: `..._<date>_<time>-<sha256 prefix>.pth`, the prefix checked on download
    checkpoint = save_hashed({"meta": {"iter": 1}, "state_dict": state}, tmp_path / "served",
                             "dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_20200609_111851")
    config = CONFIGS / f"{STAGES[2]}.py"
    options = ("--cfg-options", *tiny_stage_options("data/tiny"))
    env = {"TORCH_HOME": str(tmp_path / "torch_home")}
    run_tool("test.py", config, checkpoint, "--out", tmp_path / "local.json", *options, cwd=tmp_path, env=env)
    with FileServer(checkpoint.parent) as server:
        url = server.url(checkpoint.name)
        proc = run_tool("test.py", config, url, "--out", tmp_path / "url.json", *options, cwd=tmp_path, env=env)
        assert server.hits(checkpoint.name) == 1
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / checkpoint.name
    assert f"Downloading {url} to {cached}" in proc.stdout + proc.stderr
    assert cached.read_bytes() == checkpoint.read_bytes()
    local, remote = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "url"))
    assert remote["n"] == 2 and remote == local
