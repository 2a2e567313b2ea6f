"""The registry table and the builder: stand-in classes for the rules, the seed configs for the real thing."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from dimatting import registry
from dimatting.config import Config
from dimatting.errors import ConfigError
from dimatting.registry import build, build_dataset, build_model, metric_keys

ROOT = Path(__file__).resolve().parents[1]
STAGES = {
    1: ROOT / "configs/dim/dim_stage1-v16_1xb1-1000k_comp1k.py",
    2: ROOT / "configs/dim/dim_stage2-v16-pln_1xb1-1000k_comp1k.py",
    3: ROOT / "configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py",
}


class Leaf:
    def __init__(self, size: int, scale: float = 1.0) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size, self.scale = size, scale


class Holder:
    def __init__(self, child=None, children=(), train_cfg=None, init_cfg=None, options=None, pair=None):
        self.child, self.children, self.train_cfg, self.init_cfg = child, children, train_cfg, init_cfg
        self.options, self.pair = options, pair


class Dataset:
    def __init__(self, ann_file: str, pipeline=(), **ignored) -> None:
        self.ann_file, self.pipeline, self.ignored = ann_file, pipeline, ignored


class Encoder:
    out_channels = 256


class Decoder:
    def __init__(self, in_channels: int = 512) -> None:
        self.in_channels = in_channels


class EncoderDecoder:
    def __init__(self, encoder, decoder) -> None:
        self.encoder, self.decoder = encoder, decoder


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the stand-in classes above for one test, through the same "module:attr" strings."""
    module = types.ModuleType("_registry_standins")
    names = {"Leaf": Leaf, "Holder": Holder, "Dataset": Dataset, "Encoder": Encoder, "Decoder": Decoder,
             "SimpleEncoderDecoder": EncoderDecoder}  # fmt: skip
    for name, cls in names.items():
        setattr(module, name, cls)
        monkeypatch.setitem(registry.REGISTRY, name, f"_registry_standins:{name}")
    monkeypatch.setitem(sys.modules, "_registry_standins", module)


def require(*modules: str) -> None:
    """Skip while the modules behind the seed's types are still being written."""
    for module in modules:
        pytest.importorskip(module)


# ---------------------------------------------------------------------------------------------- table


def test_table_names_every_type_of_the_seed_configs() -> None:
    cfg = Config.fromfile(STAGES[3])
    online = Config.fromfile(ROOT / "configs/dim/dim_stage1-v16_1xb1-1000k_comp1k_online-merge.py")
    found: set[str] = set()

    def collect(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("type"), str):
                found.add(value["type"])
            for key, sub in value.items():
                if key != "init_cfg":
                    collect(sub)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for c in (cfg, online):
        collect(c.model)
        for split in ("train", "val", "test"):
            collect(c[f"{split}_dataloader"].dataset)
    assert found == set(registry.REGISTRY) - {"RescaleToZeroOne"}  # the one reference transform DIM never uses
    assert registry.METRICS == {"SAD": "SAD", "MattingMSE": "MSE", "GradientError": "GRAD", "ConnectivityError": "CONN"}


def test_table_targets_point_into_dimatting_modules_on_disk() -> None:
    for name, target in registry.REGISTRY.items():
        module, sep, attr = target.partition(":")
        assert sep and module.startswith("dimatting.") and attr == name, target
        parts = module.split(".")
        path = ROOT / "src" / Path(*parts)
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), target


def test_importing_the_registry_imports_no_model_code() -> None:
    spec = importlib.util.find_spec("dimatting.registry")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    assert "import torch" not in source and "from dimatting.models" not in source


# ---------------------------------------------------------------------------------------------- build


def test_nested_typed_dicts_and_lists_are_built_first(standins: None) -> None:
    obj = build({
        "type": "Holder",
        "child": {"type": "Leaf", "size": 2},
        "children": [{"type": "Leaf", "size": 3, "scale": 0.5}, {"type": "Holder"}],
        "pair": ({"type": "Leaf", "size": 4}, 5),
        "options": Config(a={"b": 1}),
        "train_cfg": Config(train_backbone=True, inner={"type": "Leaf"}),
        "init_cfg": {"type": "Pretrained", "checkpoint": "x"},
    })  # fmt: skip
    assert isinstance(obj, Holder)
    assert isinstance(obj.child, Leaf) and obj.child.size == 2
    assert [type(c) for c in obj.children] == [Leaf, Holder] and obj.children[0].scale == 0.5
    assert isinstance(obj.pair, tuple) and isinstance(obj.pair[0], Leaf) and obj.pair[1] == 5
    assert obj.options == {"a": {"b": 1}} and type(obj.options) is dict
    assert obj.train_cfg == {"train_backbone": True, "inner": {"type": "Leaf"}}  # kept, not built
    assert type(obj.train_cfg) is dict and type(obj.train_cfg["inner"]) is dict
    assert obj.init_cfg == {"type": "Pretrained", "checkpoint": "x"}


def test_pipeline_is_built_into_transform_objects(standins: None) -> None:
    ds = build({"type": "Dataset", "ann_file": "a.json", "pipeline": [{"type": "Leaf", "size": 1}], "extra": 1})
    assert [type(t) for t in ds.pipeline] == [Leaf] and ds.ignored == {"extra": 1}
    ds = build_dataset({"type": "Dataset", "ann_file": "a.json"})
    assert ds.pipeline == ()
    with pytest.raises(ConfigError, match=r"dataset\.pipeline\.0: a transform dict needs a 'type' key"):
        build_dataset({"type": "Dataset", "ann_file": "a.json", "pipeline": [{"size": 1}]})


def test_decoder_takes_the_encoders_out_channels_unless_given(standins: None) -> None:
    net = build({"type": "SimpleEncoderDecoder", "encoder": {"type": "Encoder"}, "decoder": {"type": "Decoder"}})
    assert net.decoder.in_channels == 256
    net = build({
        "type": "SimpleEncoderDecoder", "encoder": {"type": "Encoder"},
        "decoder": {"type": "Decoder", "in_channels": 64},
    })  # fmt: skip
    assert net.decoder.in_channels == 64


@pytest.mark.parametrize(("cfg", "message"), [
    ({"type": "Leef", "size": 1}, r"model: unknown type 'Leef'; did you mean 'Leaf'\?"),
    ({"type": "Nothing"}, r"model: unknown type 'Nothing'; known: DIM, "),
    ({"type": 3}, r"model\.type must be a type name"),
    ({"size": 1}, r"model: expected a dict with a 'type' key"),
    ({"type": "Holder", "child": {"type": "Leaf", "sise": 1}}, r"model\.child: unknown key 'sise' for Leaf; .*'size'"),
    ({"type": "Holder", "children": [{"type": "Leaf"}]}, r"model\.children\.0: Leaf needs 'size'"),
    ({"type": "Holder", "child": {"type": "Leaf", "size": -1}}, r"model\.child \(Leaf\): size must be >= 0"),
])  # fmt: skip
def test_build_errors_name_the_config_path(standins: None, cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(cfg, "model")
    if "must be >= 0" not in message:  # checking without building finds the same problems
        with pytest.raises(ConfigError, match=message):
            registry.check_args(cfg, "model")


def test_metric_keys() -> None:
    cfg = Config.fromfile(STAGES[1])
    assert metric_keys(cfg.val_evaluator) == ["SAD", "MSE", "GRAD", "CONN"]
    assert metric_keys({"type": "GradientError", "sigma": 1.4, "norm_constant": 1000}) == ["GRAD"]
    assert metric_keys([{"type": "MattingMSE", "norm_const": 1}]) == ["MSE"]  # ignored by the reference too
    with pytest.raises(ConfigError, match=r"test_evaluator\.0: GradientError\.sigma=2.0 is not supported"):
        metric_keys([{"type": "GradientError", "sigma": 2.0}], "test_evaluator")
    with pytest.raises(ConfigError, match=r"val_evaluator\.1: unknown metric 'MSE'"):
        metric_keys([{"type": "SAD"}, {"type": "MSE"}])
    with pytest.raises(ConfigError, match="SAD has no parameter 'prefix'"):
        metric_keys([{"type": "SAD", "prefix": "x"}])


# ------------------------------------------------------------------------------- the seed's real types


@pytest.mark.parametrize(
    ("stage", "tensors", "params"), [(1, 42, 26_200_001), (2, 50, 26_276_802), (3, 50, 26_276_802)]
)
def test_build_the_seed_models(stage: int, tensors: int, params: int) -> None:
    require("dimatting.models.dim", "dimatting.losses")
    import torch

    model = build_model(Config.fromfile(STAGES[stage]).model)
    assert type(model).__name__ == "DIM"
    assert isinstance(model.data_preprocessor, torch.nn.Module)  # built, unlike the reference's dict
    assert len(model.state_dict()) == tensors  # facts §2.7
    assert sum(p.numel() for p in model.parameters()) == params
    assert (model.train_backbone, model.train_refiner, model.refine) == {
        1: (True, False, False), 2: (False, True, True), 3: (True, True, True)
    }[stage]  # fmt: skip
    assert model.backbone.decoder.deconv6_1.in_channels == 512


def test_build_the_seed_dataset_with_its_pipeline(tmp_path: Path) -> None:
    require("dimatting.data.comp1k", "dimatting.data.transforms", "dimatting.data.synthetic")
    from dimatting.data.synthetic import make_synthetic

    root = make_synthetic(tmp_path / "comp1k", n_train=1, n_test=1, size=(64, 64))
    cfg = Config.fromfile(STAGES[1])
    for split in ("train", "val"):
        dataset_cfg = cfg[f"{split}_dataloader"].dataset
        dataset_cfg.data_root = str(root)
        dataset = build_dataset(dataset_cfg, f"{split}_dataloader.dataset")
        assert len(dataset) == 1
        names = [type(t).__name__ for t in dataset.pipeline]
        assert names == [step.type for step in dataset_cfg.pipeline]
    sample = dataset[0]
    assert tuple(sample["inputs"].shape) == (3, 64, 64)
