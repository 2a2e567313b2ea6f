"""Config loading: the seed's files, the reference's merge rules, --cfg-options, dumping, unused keys."""

from __future__ import annotations

import copy
import math
import textwrap
from pathlib import Path

import pytest

from dimatting.config import Config, check_keys, closest_config, dump, merge_options, parse_options, parse_value
from dimatting.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
REFERENCE = ROOT / "tests" / "fixtures" / "reference_configs"
STAGE1 = "dim_stage1-v16_1xb1-1000k_comp1k.py"
ONLINE = "dim_stage1-v16_1xb1-1000k_comp1k_online-merge.py"
STAGE2 = "dim_stage2-v16-pln_1xb1-1000k_comp1k.py"
STAGE3 = "dim_stage3-v16-pln_1xb1-1000k_comp1k.py"
SEEDS = (STAGE1, ONLINE, STAGE2, STAGE3)


def load(name: str, root: Path = CONFIGS) -> Config:
    return Config.fromfile(root / "dim" / name)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def require_model_and_data_modules() -> None:
    """check_keys imports the classes it checks; skip while they are still being written."""
    for module in ("dimatting.models.dim", "dimatting.losses", "dimatting.data.transforms", "dimatting.data.comp1k"):
        pytest.importorskip(module)


def without_our_additions(cfg: Config) -> dict:
    """Our config minus the keys docs/configs.md lists as dimatting's additions."""
    plain = cfg.to_dict()
    plain.pop("init_from", None)
    for key in ("save_best", "rule", "max_keep_ckpts"):
        plain["default_hooks"]["checkpoint"].pop(key)
    return plain


# ------------------------------------------------------------------------------------------ seed configs


@pytest.mark.parametrize("name", SEEDS)
def test_seed_configs_load(name: str) -> None:
    cfg = load(name)
    assert isinstance(cfg, Config)
    assert cfg.model.type == "DIM"
    assert cfg.experiment_name == Path(name).stem
    assert "_base_" not in cfg


@pytest.mark.parametrize("base", ["_base_/datasets/comp1k.py", "_base_/matting_default_runtime.py"])
def test_base_files_load_alone(base: str) -> None:
    assert len(Config.fromfile(CONFIGS / base)) > 0


def test_stage1_merged_values_are_the_references() -> None:
    cfg = load(STAGE1)
    model = cfg.model
    assert model.data_preprocessor == {
        "type": "MattorPreprocessor",
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "proc_trimap": "rescale_to_zero_one",
    }
    assert model.backbone.type == "SimpleEncoderDecoder"
    assert model.backbone.encoder == {
        "type": "VGG16",
        "in_channels": 4,
        "init_cfg": {"type": "Pretrained", "checkpoint": "open-mmlab://mmedit/vgg16"},
    }
    assert model.backbone.decoder == {"type": "PlainDecoder"}
    assert model.loss_alpha == {"type": "CharbonnierLoss", "loss_weight": 0.5}
    assert model.loss_comp == {"type": "CharbonnierCompLoss", "loss_weight": 0.5}
    assert "refiner" not in model and "loss_refine" not in model
    assert model.train_cfg == {"train_backbone": True, "train_refiner": False}
    assert model.test_cfg == {"refine": False, "resize_method": "pad", "resize_mode": "reflect", "size_divisor": 32}

    train = cfg.train_dataloader
    assert (train.batch_size, train.num_workers, train.persistent_workers) == (1, 4, False)
    assert train.sampler == {"type": "InfiniteSampler", "shuffle": True}
    assert train.dataset.type == "AdobeComp1kDataset"
    assert train.dataset.data_root == "data/adobe_composition-1k"
    assert (train.dataset.ann_file, train.dataset.test_mode) == ("training_list.json", False)
    steps = train.dataset.pipeline
    assert [s.type for s in steps] == [
        "LoadImageFromFile", "LoadImageFromFile", "LoadImageFromFile", "LoadImageFromFile",
        "CropAroundUnknown", "Flip", "Resize", "GenerateTrimap", "PackInputs",
    ]  # fmt: skip
    assert [s.key for s in steps[:4]] == ["alpha", "fg", "bg", "merged"]
    assert steps[0].color_type == "grayscale"
    assert steps[4]["keys"] == ["alpha", "merged", "fg", "bg"]
    assert steps[4].crop_sizes == [320, 480, 640]
    assert steps[5]["keys"] == ["alpha", "merged", "fg", "bg"]
    assert steps[6].scale == (320, 320) and steps[6].keep_ratio is False
    assert steps[7].kernel_size == (1, 30)
    assert train.dataset.pipeline == cfg.train_pipeline

    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert (loader.batch_size, loader.num_workers, loader.drop_last) == (1, 4, False)
        assert loader.sampler == {"type": "DefaultSampler", "shuffle": False}
        assert (loader.dataset.ann_file, loader.dataset.test_mode) == ("test_list.json", True)
        assert [(s.type, s.get("key"), s.get("save_original_img")) for s in loader.dataset.pipeline] == [
            ("LoadImageFromFile", "alpha", True),
            ("LoadImageFromFile", "trimap", True),
            ("LoadImageFromFile", "merged", None),
            ("PackInputs", None, None),
        ]
    metrics = [{"type": "SAD"}, {"type": "MattingMSE"}, {"type": "GradientError"}, {"type": "ConnectivityError"}]
    assert cfg.val_evaluator == metrics and cfg.test_evaluator == metrics

    assert cfg.train_cfg == {"type": "IterBasedTrainLoop", "max_iters": 1_000_000, "val_interval": 40000}
    assert cfg.val_cfg == {"type": "MultiValLoop"} and cfg.test_cfg == {"type": "MultiTestLoop"}
    assert cfg.optim_wrapper.optimizer == {"type": "Adam", "lr": 1e-5}
    assert cfg.optim_wrapper.type == "OptimWrapper"
    hooks = cfg.default_hooks
    assert hooks.checkpoint == {
        "type": "CheckpointHook", "interval": 40000, "by_epoch": False, "out_dir": "./work_dirs/",
        "save_best": "SAD", "rule": "less", "max_keep_ckpts": 3,
    }  # fmt: skip
    assert hooks.logger == {"type": "LoggerHook", "interval": 100}
    assert set(hooks) == {"timer", "logger", "param_scheduler", "checkpoint", "sampler_seed"}
    assert cfg.env_cfg.dist_cfg == {"backend": "nccl"}
    assert cfg.env_cfg.mp_cfg == {"mp_start_method": "fork", "opencv_num_threads": 4}
    assert cfg.custom_hooks == [{"type": "BasicVisualizationHook", "interval": 2000}]
    assert (cfg.load_from, cfg.resume, cfg.save_dir, cfg.default_scope) == (None, False, "./work_dirs/", "mmagic")
    assert "randomness" not in cfg and "work_dir" not in cfg and "init_from" not in cfg


def test_online_merge_replaces_the_training_pipeline_only() -> None:
    stage1, online = load(STAGE1), load(ONLINE)
    steps = online.train_dataloader.dataset.pipeline
    assert [s.type for s in steps] == [
        "LoadImageFromFile", "LoadImageFromFile", "LoadImageFromFile", "MergeFgAndBg",
        "CropAroundUnknown", "Flip", "Resize", "GenerateTrimap", "PackInputs",
    ]  # fmt: skip
    assert [s.key for s in steps[:3]] == ["alpha", "fg", "bg"]
    assert steps == online.train_pipeline
    assert steps[4:] == stage1.train_dataloader.dataset.pipeline[4:]
    assert online.train_dataloader.batch_size == 1  # inherited from stage 1's dataloader dict
    for key in ("model", "val_dataloader", "test_dataloader", "train_cfg", "optim_wrapper", "default_hooks"):
        assert online[key] == stage1[key]


@pytest.mark.parametrize(("name", "train_backbone", "init_from"), [
    (STAGE2, False, "dim_stage1-v16_1xb1-1000k_comp1k"),
    (STAGE3, True, "dim_stage2-v16-pln_1xb1-1000k_comp1k"),
])  # fmt: skip
def test_stage2_and_3_inherit_and_override(name: str, train_backbone: bool, init_from: str) -> None:
    stage1, cfg = load(STAGE1), load(name)
    model = cfg.model
    assert model.refiner == {"type": "PlainRefiner"}
    assert model.loss_refine == {"type": "CharbonnierLoss"}  # weight 1.0 by default, not 0.5
    assert model.train_cfg == {"train_backbone": train_backbone, "train_refiner": True}
    assert model.test_cfg == {"refine": True, "resize_method": "pad", "resize_mode": "reflect", "size_divisor": 32}
    for key in ("backbone", "data_preprocessor", "loss_alpha", "loss_comp"):
        assert model[key] == stage1.model[key]
    assert cfg.init_from == init_from
    assert cfg.load_from is None
    assert cfg.train_dataloader == stage1.train_dataloader
    assert cfg.train_cfg == stage1.train_cfg


def test_stage3_save_dir_does_not_move_the_checkpoint_out_dir() -> None:
    cfg = load(STAGE3)
    assert cfg.save_dir == "./work_dirs"
    assert cfg.default_hooks.checkpoint.out_dir == "./work_dirs/"  # resolved when stage 1 ran (facts §1.6)


@pytest.mark.parametrize("name", SEEDS)
def test_reference_config_files_load_and_equal_ours_but_for_our_additions(name: str) -> None:
    reference = load(name, REFERENCE)
    assert "init_from" not in reference
    assert "save_best" not in reference.default_hooks.checkpoint
    assert without_our_additions(load(name)) == reference.to_dict()


@pytest.mark.parametrize("name", SEEDS)
def test_seed_configs_unused_keys(name: str) -> None:
    require_model_and_data_modules()
    unused = check_keys(load(name))
    for key in (
        "visualizer",
        "vis_backends",
        "custom_hooks",
        "default_hooks.checkpoint.out_dir",
        "default_hooks.timer",
        "train_cfg.type",
        "val_cfg",
        "test_cfg",
        "train_pipeline",
        "train_dataloader.persistent_workers",
        "optim_wrapper.type",
    ):
        assert key in unused
    for key in unused:
        assert not key.startswith(("model", "train_dataloader.dataset", "optim_wrapper.optimizer", "init_from"))
        assert key not in ("train_cfg.max_iters", "default_hooks.checkpoint.save_best", "load_from", "resume",
                           "experiment_name", "env_cfg.cudnn_benchmark", "env_cfg.mp_cfg")
    assert len(unused) == len(set(unused))
    assert check_keys(load(name, REFERENCE)) == unused


@pytest.mark.parametrize(("option", "suggestion"), [
    ("train_cfg.max_iter=10", "train_cfg.max_iters"),
    ("optim_wrapper.optimiser.lr=0.1", "optim_wrapper.optimizer"),
    ("default_hooks.checkpoint.save_bset=MSE", "default_hooks.checkpoint.save_best"),
    ("train_dataloader.batchsize=4", "train_dataloader.batch_size"),
    ("randomnes.seed=1", "randomness"),
    ("init_form=x", "init_from"),
])  # fmt: skip
def test_near_miss_of_an_honoured_key_is_an_error(option: str, suggestion: str) -> None:
    cfg = merge_options(Config(train_cfg={"max_iters": 5}, default_hooks={"checkpoint": {}}), [option])
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        check_keys(cfg)


def test_unknown_keys_far_from_honoured_ones_are_only_listed() -> None:
    cfg = Config(train_cfg={"max_iters": 5, "val_begin": 1}, my_note="x", val_cfg={}, randomness={"seed": 1})
    assert check_keys(cfg) == ["train_cfg.val_begin", "my_note", "val_cfg"]


def test_model_key_typo_names_the_close_match() -> None:
    require_model_and_data_modules()
    cfg = load(STAGE1)
    cfg.model.backbone.encoderr = cfg.model.backbone.pop("encoder")
    with pytest.raises(ConfigError, match=r"model\.backbone: unknown key 'encoderr'.*'encoder'"):
        check_keys(cfg)
    cfg = load(STAGE1)
    cfg.model.test_cfg.refin = True
    with pytest.raises(ConfigError, match=r"model\.test_cfg: unknown key 'refin'.*'refine'"):
        check_keys(cfg)
    cfg = load(STAGE1)
    cfg.val_dataloader.dataset.pipeline[0].colour_type = "grayscale"
    with pytest.raises(ConfigError, match=r"val_dataloader\.dataset\.pipeline\.0: unknown key 'colour_type'"):
        check_keys(cfg)


# ----------------------------------------------------------------------------------------- merge rules


def test_dicts_merge_lists_replace_and_base_values_are_resolved(tmp_path: Path) -> None:
    write(
        tmp_path,
        "base.py",
        """
        size = 3
        model = dict(type='M', inner=dict(a=1, b=2), items=[1, 2, 3])
        sizes = [size, size]
        pipeline = [dict(type='A', x=1), dict(type='B')]
    """,
    )
    path = write(
        tmp_path,
        "child.py",
        """
        _base_ = './base.py'
        size = 5
        model = dict(inner=dict(b=20, c=30), items=[9])
        pipeline = [dict(x=2)]
    """,
    )
    cfg = Config.fromfile(path)
    assert cfg.model == {"type": "M", "inner": {"a": 1, "b": 20, "c": 30}, "items": [9]}
    assert cfg.pipeline == [{"x": 2}]
    assert cfg.sizes == [3, 3]  # the base's value, not re-evaluated with the child's `size`
    assert cfg.size == 5
    assert list(cfg) == ["size", "model", "sizes", "pipeline"]


def test_delete_replaces_the_inherited_dict(tmp_path: Path) -> None:
    write(tmp_path, "base.py", "opt = dict(type='SGD', lr=0.1, momentum=0.9)\nhook = 3\n")
    path = write(
        tmp_path,
        "child.py",
        """
        _base_ = ['base.py']
        opt = dict(_delete_=True, type='Adam', lr=0.001)
        hook = dict(_delete_=True, interval=5)
        new = dict(_delete_=True, a=dict(_delete_=False, b=1))
    """,
    )
    cfg = Config.fromfile(path)
    assert cfg.opt == {"type": "Adam", "lr": 0.001}
    assert cfg.hook == {"interval": 5}
    assert cfg.new == {"a": {"b": 1}}


def test_dict_over_a_non_dict_needs_delete(tmp_path: Path) -> None:
    write(tmp_path, "base.py", "hook = None\n")
    path = write(tmp_path, "child.py", "_base_ = 'base.py'\nhook = dict(interval=5)\n")
    with pytest.raises(ConfigError, match=r"child\.py: hook: a dict cannot be merged.*_delete_=True"):
        Config.fromfile(path)


def test_duplicate_key_among_sibling_bases_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "x = 1\ny = 2\n")
    write(tmp_path, "b.py", "y = 3\n")
    path = write(tmp_path, "child.py", "_base_ = ['a.py', 'b.py']\n")
    with pytest.raises(ConfigError, match=r"key\(s\) y defined again in _base_ file .*b\.py"):
        Config.fromfile(path)


def test_nested_bases_relative_paths_and_base_references(tmp_path: Path) -> None:
    write(tmp_path, "_base_/root.py", "model = dict(type='M', depth=1)\nroot = 'r'\n")
    write(tmp_path, "_base_/mid.py", "_base_ = './root.py'\nmodel = dict(depth=2)\n")
    path = write(
        tmp_path,
        "sub/child.py",
        """
        _base_ = ['../_base_/mid.py']
        depth_plus = _base_.model.depth + 1
        copied = {{ _base_.model }}
        copied['depth'] = 9
        here = '{{fileDirname}}/{{fileBasenameNoExtension}}{{fileExtname}}|{{fileBasename}}'
    """,
    )
    cfg = Config.fromfile(path)
    assert cfg.model == {"type": "M", "depth": 2}  # the copy's change does not leak into the base
    assert (cfg.root, cfg.depth_plus) == ("r", 3)
    assert cfg.copied == {"type": "M", "depth": 9}
    assert cfg.here == f"{path.parent.as_posix()}/child.py|child.py"


def test_helpers_are_not_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.py",
        """
        import os.path as osp
        from math import sqrt

        def double(x):
            return 2 * x

        class Helper:
            pass

        _private = 1
        __dunder__ = 2
        value = double(int(sqrt(16)))
        name = osp.join('a', 'b')
    """,
    )
    assert Config.fromfile(path) == {"_private": 1, "value": 8, "name": "a/b"}


@pytest.mark.parametrize(("text", "message"), [
    ("a = 1\nb = (\n", r"c\.py:2: syntax error"),
    ("a = 1\nb = undefined_name + 1\n", r"c\.py:2: NameError: name 'undefined_name'"),
    ("_base_ = 'missing.py'\n", r"missing\.py: config file not found \(a _base_ of .*c\.py\)"),
    ("_base_ = 3\n", r"c\.py:1: _base_ must be a file name"),
    ("_base_ = 'mmagic::dim/x.py'\n", r"names a package config"),
    ("_base_ = 'c.py'\n", r"circular _base_ inheritance"),
])  # fmt: skip
def test_bad_config_files_give_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "c.py", text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.fromfile(path)
    assert "\n" not in str(info.value)


def test_a_mistyped_path_suggests_the_closest_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "configs" / "_base_", "runtime.py", "a = 1\n")
    write(tmp_path / "configs" / "dim", "dim_stage3-v16-pln_1xb1-1000k_comp1k.py", "_base_ = '../_base_/runtim.py'\n")
    monkeypatch.chdir(tmp_path)
    assert closest_config("onfigs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py") == Path(
        "configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py")
    assert closest_config(tmp_path / "configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1.py") == (
        tmp_path / "configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py")
    assert closest_config("something/else/entirely.py") is None
    assert closest_config("/no/such/root/dir/x.py") is None  # the file system root is never scanned
    with pytest.raises(ConfigError, match=r"runtim\.py: config file not found \(a _base_ of .*\); did you mean "
                                          r".*configs/_base_/runtime\.py\?"):
        Config.fromfile("configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py")


def test_missing_and_non_python_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found; check the path"):
        Config.fromfile(tmp_path / "nope.py")
    (tmp_path / "c.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match=r"only Python \(\.py\) config files"):
        Config.fromfile(tmp_path / "c.yaml")


# ---------------------------------------------------------------------------------------- cfg-options


@pytest.mark.parametrize(("raw", "value"), [
    ("1", 1), ("-3", -3), ("1.5", 1.5), ("1e-5", 1e-5), ("true", True), ("False", False), ("TRUE", True),
    ("None", None), ("none", "none"), ("abc", "abc"), ("'abc'", "abc"), ('"a b c"', "abc"), ("", ""),
    ("[1,2]", [1, 2]), ("1,2", [1, 2]), ("(1,2)", (1, 2)), ("(1)", (1,)), ("[]", []), ("()", ()),
    ("[1,]", [1]), ("[ 1, 'a', None ]", [1, "a", None]), ("[(1,2),[3,'x',[true]]]", [(1, 2), [3, "x", [True]]]),
    ("[1],[2]", [[1], [2]]), ("./work_dirs/x", "./work_dirs/x"), ("1_000", 1000),
])  # fmt: skip
def test_option_values_parse_like_the_reference(raw: str, value: object) -> None:
    parsed = parse_value(raw)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("raw", ["[1,2", "(1,2]]", "a)("])
def test_unbalanced_brackets_are_an_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="unbalanced brackets"):
        parse_value(raw)


@pytest.mark.parametrize("item", ["train_cfg.max_iters", "=3", "a..b=1", "a.=1"])
def test_option_without_key_value_is_an_error(item: str) -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_options([item])


def test_merge_options_updates_nested_keys_and_list_items_in_place() -> None:
    cfg = load(STAGE1)
    result = merge_options(cfg, [
        "train_cfg.max_iters=20",
        "optim_wrapper.optimizer.lr=1e-3",
        "randomness.seed=7",
        "model.backbone.encoder.init_cfg=None",
        "train_dataloader.dataset.pipeline.4.crop_sizes=[320]",
        "val_dataloader.dataset.pipeline.0=dropped",
        "work_dir=/tmp/x",
        "train_cfg.max_iters=30",
    ])  # fmt: skip
    assert result is cfg
    assert cfg.train_cfg == {"type": "IterBasedTrainLoop", "max_iters": 30, "val_interval": 40000}
    assert cfg.optim_wrapper.optimizer == {"type": "Adam", "lr": 1e-3}
    assert cfg.randomness == {"seed": 7}
    assert cfg.model.backbone.encoder == {"type": "VGG16", "in_channels": 4, "init_cfg": None}
    crop = cfg.train_dataloader.dataset.pipeline[4]
    assert crop == {"type": "CropAroundUnknown", "keys": ["alpha", "merged", "fg", "bg"], "crop_sizes": [320]}
    assert cfg.val_dataloader.dataset.pipeline[0] == "dropped"
    assert cfg.test_dataloader.dataset.pipeline[0].key == "alpha"  # val and test are separate objects
    assert cfg.train_pipeline[4].crop_sizes == [320, 480, 640]
    assert cfg.work_dir == "/tmp/x"
    assert isinstance(cfg.randomness, Config)


@pytest.mark.parametrize(("option", "message"), [
    ("train_dataloader.dataset.pipeline.9.x=1", r"pipeline\.9: index out of range, .* has 9 items"),
    ("train_dataloader.dataset.pipeline.first.x=1", r"pipeline is a list; index it with a number, not 'first'"),
    ("load_from.path=x", r"load_from: a dict cannot be merged into the inherited value None"),
])  # fmt: skip
def test_bad_option_targets_are_errors(option: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        merge_options(load(STAGE1), [option])


def test_option_used_as_value_and_prefix_is_an_error() -> None:
    with pytest.raises(ConfigError, match="is set to a value and also used"):
        merge_options(Config(), ["a=1", "a.b=2"])
    with pytest.raises(ConfigError, match="is set to a value and also used"):
        merge_options(Config(), ["a.b=2", "a=1"])


def test_option_delete_key_replaces_a_dict() -> None:
    cfg = merge_options(load(STAGE1), ["model.loss_comp._delete_=True", "model.loss_comp.type=CharbonnierLoss"])
    assert cfg.model.loss_comp == {"type": "CharbonnierLoss"}


# ----------------------------------------------------------------------------------- Config and dump


def test_attribute_access_and_conversion() -> None:
    cfg = Config({"a": {"b": [{"c": 1}, ({"d": 2},)]}})
    assert cfg.a.b[0].c == 1 and cfg.a.b[1][0].d == 2
    cfg.x = {"y": {"z": 3}}
    assert isinstance(cfg.x.y, Config) and cfg["x"]["y"]["z"] == 3
    cfg.x.y.z = 4
    assert cfg.x == {"y": {"z": 4}}
    del cfg.x
    with pytest.raises(AttributeError, match="no key 'x'"):
        _ = cfg.x
    clone = copy.deepcopy(cfg)
    clone.a.b[0].c = 5
    assert cfg.a.b[0].c == 1 and isinstance(clone, Config)
    plain = cfg.to_dict()
    assert type(plain) is dict and type(plain["a"]["b"][0]) is dict and type(plain["a"]["b"][1]) is tuple


@pytest.mark.parametrize("name", SEEDS)
def test_dump_loads_back_to_an_equal_config(tmp_path: Path, name: str) -> None:
    cfg = load(name)
    target = tmp_path / "work" / name
    cfg.dump(target)
    assert [p.name for p in target.parent.iterdir()] == [name]  # no temporary file left behind
    again = Config.fromfile(target)
    assert again == cfg and list(again) == list(cfg)
    assert again.train_pipeline[6].scale == (320, 320)  # tuples stay tuples
    assert max(len(line) for line in target.read_text().splitlines()) <= 110


def test_dump_special_values(tmp_path: Path) -> None:
    cfg = Config(a=(1,), b={"not-a-name": 1, 2: "x"}, c=[math.inf, -math.inf], d={"e": "x" * 200}, f=True)
    dump(cfg, tmp_path / "c.py")
    again = Config.fromfile(tmp_path / "c.py")
    assert again == cfg and again.a == (1,)


@pytest.mark.parametrize("cfg", [Config({"bad-name": 1}), Config({"dict": 1}), Config(a=object())])
def test_undumpable_configs_are_errors(tmp_path: Path, cfg: Config) -> None:
    with pytest.raises(ConfigError, match="cannot be written"):
        cfg.pretty_text()
