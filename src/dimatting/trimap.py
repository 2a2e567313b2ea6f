"""A trimap from a rough binary mask, for users who have a segmentation but no trimap.

DIM needs an unknown band around the object's edge. Eroding the mask gives sure foreground, dilating it
gives the complement of sure background; both with an elliptical kernel, so the band has the same width
in every direction (a square kernel would widen it along diagonals).
"""

from __future__ import annotations

import cv2
import numpy as np

from dimatting.errors import InputError


def trimap_from_mask(mask: np.ndarray, band: int = 15, source: object = "mask") -> np.ndarray:
    """uint8 HxW mask (foreground > 127) -> trimap in {0, 128, 255} with an unknown band of `band` px each side."""
    if band < 1:
        raise InputError(f"{source}: the unknown band must be at least 1 px wide (got --band {band})")
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise InputError(f"{source}: mask must be a single-channel 8-bit image; save it as a grayscale PNG")
    foreground = (mask > 127).astype(np.uint8)
    if not foreground.any() or foreground.all():
        raise InputError(
            f"{source}: the mask is all {'foreground' if foreground.any() else 'background'}; "
            "white (>127) must mark the object and black the background"
        )
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_fg = cv2.erode(foreground, kernel, borderType=cv2.BORDER_REPLICATE)
    maybe_fg = cv2.dilate(foreground, kernel, borderType=cv2.BORDER_REPLICATE)
    trimap = np.full(mask.shape, 128, dtype=np.uint8)
    trimap[sure_fg == 1] = 255
    trimap[maybe_fg == 0] = 0
    return trimap
