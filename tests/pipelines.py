"""Test helper: the stage-1 config's train pipeline (facts §1.4), built directly from our transforms."""

from __future__ import annotations

from dimatting.data.transforms import CropAroundUnknown, Flip, GenerateTrimap, LoadImageFromFile, PackInputs, Resize

KEYS = ["alpha", "merged", "fg", "bg"]


def stage1_train_pipeline() -> list:
    """The stage-1 config's train pipeline (facts §1.4), built directly."""
    return [
        LoadImageFromFile("alpha", color_type="grayscale"),
        LoadImageFromFile("fg"),
        LoadImageFromFile("bg"),
        LoadImageFromFile("merged"),
        CropAroundUnknown(keys=KEYS, crop_sizes=[320, 480, 640]),
        Flip(keys=KEYS),
        Resize(keys=KEYS, scale=(320, 320), keep_ratio=False),
        GenerateTrimap(kernel_size=(1, 30)),
        PackInputs(),
    ]
