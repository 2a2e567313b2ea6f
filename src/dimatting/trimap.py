"""The trimap a prediction needs: the user's trimap file, or one built from a rough binary mask.

DIM needs an unknown band around the object's edge. Eroding the mask gives sure foreground, dilating it
gives the complement of sure background; both with an elliptical kernel, so the band has the same width
in every direction (a square kernel would widen it along diagonals).
"""

from __future__ import annotations

import cv2
import numpy as np

from dimatting.errors import InputError
from dimatting.io import ImageSource, check_same_size, read_gray, read_image, read_trimap

# unknown band each side of the mask's edge, in pixels (`dim predict --band`, `dim serve`'s `band` field)
DEFAULT_BAND = 15


def trimap_from_mask(mask: np.ndarray, band: int = DEFAULT_BAND, source: object = "mask") -> np.ndarray:
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


def read_image_and_trimap(
    image: ImageSource,
    trimap: ImageSource | None = None,
    mask: ImageSource | None = None,
    band: int = DEFAULT_BAND,
    tolerant: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and checked trimap from an image and either a trimap or a rough mask (files or uploads).

    `dim predict` and `dim serve` both read their inputs here, so the same inputs give the same arrays and
    the same error messages. `tolerant` maps stray trimap values to the nearest level.
    """
    if (trimap is None) == (mask is None):
        raise ValueError("read_image_and_trimap needs exactly one of trimap and mask")
    rgb = read_image(image)
    if trimap is not None:
        levels = read_trimap(trimap, tolerant=tolerant)
        check_same_size(rgb, levels, image, trimap)
        return rgb, levels
    gray = read_gray(mask, "mask")
    check_same_size(rgb, gray, image, mask)
    return rgb, trimap_from_mask(gray, band=band, source=mask)
