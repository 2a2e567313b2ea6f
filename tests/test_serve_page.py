"""`dim serve`'s page in a real headless Chromium (Debian's, driven by Playwright): open a photo, make and
paint the trimap, zoom and pan, predict, and check that what the page shows and downloads is the API's."""

from __future__ import annotations

from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from dimatting.io import read_gray
from tests.serve_helpers import chromium_page, require_chromium, write_sample


@pytest.fixture()
def page(served, tmp_path):
    """The served page in a fresh browser profile. Script errors fail the test, and so do refused requests
    unless the test takes them from `page.refused` ("<status> <path>") itself."""
    require_chromium()
    errors: list[str] = []
    with chromium_page(tmp_path / "profile") as page:
        page.refused = []
        page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
        page.on("console", lambda message: message.type == "error" and not message.text.startswith(
            "Failed to load resource") and errors.append(message.text))

        def on_response(response) -> None:
            path = response.url.removeprefix(served.url)
            # a progress poll may cross the end of its prediction and find it gone: a 404, as the API says
            if response.status >= 400 and not (response.status == 404 and path.startswith("/api/progress/")):
                page.refused.append(f"{response.status} {path}")

        page.on("response", on_response)
        page.goto(served.url)
        page.wait_for_selector("#model:has-text('DIM stage 2/3')")
        yield page
        assert errors == [] and page.refused == []
    served.matter.gate.set()


def open_photo(page, path: Path) -> None:
    page.set_input_files("#image-input", str(path))
    page.wait_for_selector("body.has-photo[data-busy=false]")


def at(page, x: float, y: float) -> tuple[float, float]:
    """Where photo pixel (x, y)'s centre is on the screen, at the current zoom and pan."""
    box = page.locator("#photo").bounding_box()
    scale = box["width"] / int(page.locator("#photo").get_attribute("width"))
    return box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale


def stroke(page, *points: tuple[float, float]) -> None:
    page.mouse.move(*at(page, *points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(page, *point), steps=6)
    page.mouse.up()


def set_brush(page, key: str, size: int) -> None:
    page.keyboard.press(key)
    page.locator("#brush-size").evaluate("(el, size) => { el.value = size; el.dispatchEvent(new Event('input')); }",
                                         size)


def download(page, button: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.click(button)
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def wait_idle(page) -> None:
    page.wait_for_selector("body[data-busy=false]")


def api(served, path: str, files: dict[str, Path], **options: object) -> httpx.Response:
    upload = {field: (file.name, file.read_bytes()) for field, file in files.items()}
    return httpx.post(f"{served.url}{path}", files=upload, timeout=120, **options)


def api_png(served, path: str, files: dict[str, Path], **options: object) -> np.ndarray:
    response = api(served, path, files, **options)
    assert response.status_code == 200, response.text
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)


def test_paint_zoom_pan_predict_and_the_shown_alpha_is_the_apis(page, served, tmp_path):
    sample = write_sample(tmp_path, 160, 120)
    open_photo(page, sample["image"])
    assert page.locator("#image-info").text_content() == "photo.png: 160 × 120 px"
    set_brush(page, "f", 12)
    stroke(page, (50, 60), (110, 60))
    set_brush(page, "u", 10)
    stroke(page, (40, 40), (120, 40))
    page.keyboard.down("Shift")  # Shift+click: a straight line from the end of the last stroke
    page.mouse.click(*at(page, 120, 80))
    page.keyboard.up("Shift")
    zoom = page.locator("#zoom-value").text_content()
    page.keyboard.press("+")
    page.keyboard.press("+")
    assert page.locator("#zoom-value").text_content() != zoom
    before = page.locator("#photo").bounding_box()
    page.keyboard.down("Space")
    page.mouse.move(600, 400)
    page.mouse.down()
    page.mouse.move(650, 380, steps=4)
    page.mouse.up()
    page.keyboard.up("Space")
    after = page.locator("#photo").bounding_box()
    assert (round(after["x"] - before["x"]), round(after["y"] - before["y"])) == (50, -20)
    set_brush(page, "f", 3)
    stroke(page, (20, 100), (20, 100))  # a dot, placed while zoomed in and panned
    page.mouse.move(600, 400)
    page.mouse.wheel(0, 300)
    page.keyboard.press("0")

    trimap = read_gray(download(page, "#download-trimap", tmp_path / "page"))
    assert set(np.unique(trimap)) == {0, 128, 255}
    assert (trimap[60, 80], trimap[40, 80], trimap[60, 120], trimap[100, 20], trimap[100, 24]) == (
        255, 128, 128, 255, 0)

    page.click("#predict")
    page.wait_for_selector("body.has-result[data-busy=false]")
    assert page.locator("#status").text_content().startswith("done in")
    files = {"image": sample["image"], "trimap": tmp_path / "page" / "photo_trimap.png"}
    alpha = api_png(served, "/api/predict", files)
    cutout = api(served, "/api/predict", files, params={"output": "cutout"}).content
    shown = page.locator("#alpha").evaluate(
        "(c) => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data.filter((_, i) => i % 4 == 0))")
    np.testing.assert_array_equal(np.array(shown, np.uint8).reshape(alpha.shape), alpha)
    np.testing.assert_array_equal(read_gray(download(page, "#download-alpha", tmp_path / "page")), alpha)
    assert download(page, "#download-cutout", tmp_path / "page").read_bytes() == cutout

    page.click("button.view[data-view=cutout]")
    assert page.locator("#cutout").is_visible() and not page.locator("#overlay").is_visible()
    assert "checker" in page.locator("#cutout").get_attribute("class")
    page.locator("#backdrop-colour").evaluate("(el) => { el.value = '#ff0000'; el.dispatchEvent(new Event('input')); }")
    assert page.locator("#cutout").evaluate("(c) => getComputedStyle(c).backgroundColor") == "rgb(255, 0, 0)"
    page.screenshot(path=str(tmp_path / "serve.png"))
    assert (tmp_path / "serve.png").stat().st_size > 10_000


def test_trimap_from_a_mask_or_a_file_eraser_undo_redo(page, served, tmp_path):
    sample = write_sample(tmp_path, 96, 72)
    open_photo(page, sample["image"])
    page.fill("#band", "9")
    page.set_input_files("#mask-input", str(sample["mask"]))
    page.wait_for_selector("#status:has-text('trimap from photo_mask.png (band 9 px)')")
    files = {"image": sample["image"], "mask": sample["mask"]}
    from_mask_9 = api_png(served, "/api/trimap", files, data={"band": "9"})
    assert not np.array_equal(api_png(served, "/api/trimap", files), from_mask_9)  # the page sent its band
    np.testing.assert_array_equal(read_gray(download(page, "#download-trimap", tmp_path / "a")), from_mask_9)

    set_brush(page, "b", 8)
    stroke(page, (30, 36), (66, 36))
    painted = read_gray(download(page, "#download-trimap", tmp_path / "b"))
    assert painted[36, 48] == 0 and from_mask_9[36, 48] == 255
    set_brush(page, "e", 20)  # the eraser paints back the trimap the photo started from
    stroke(page, (30, 36), (66, 36))
    np.testing.assert_array_equal(read_gray(download(page, "#download-trimap", tmp_path / "c")), from_mask_9)
    page.keyboard.press("Control+z")
    np.testing.assert_array_equal(read_gray(download(page, "#download-trimap", tmp_path / "d")), painted)
    page.keyboard.press("Control+Shift+z")
    np.testing.assert_array_equal(read_gray(download(page, "#download-trimap", tmp_path / "e")), from_mask_9)

    trimap = read_gray(sample["trimap"])
    cv2.imwrite(str(tmp_path / "pymatting.png"), np.where(trimap == 128, 102, trimap).astype(np.uint8))
    page.set_input_files("#trimap-input", str(tmp_path / "pymatting.png"))
    page.wait_for_selector("#notices li:has-text('pymatting.png: trimap unknown value 102 mapped to 128')")
    np.testing.assert_array_equal(read_gray(download(page, "#download-trimap", tmp_path / "f")), trimap)
    page.click("#start-blank")
    assert read_gray(download(page, "#download-trimap", tmp_path / "g")).max() == 0
    page.click("#undo")
    np.testing.assert_array_equal(read_gray(download(page, "#download-trimap", tmp_path / "h")), trimap)


def test_errors_show_in_the_clis_words(page, served, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture\n")
    page.set_input_files("#image-input", str(tmp_path / "notes.txt"))
    wait_idle(page)
    assert page.locator("#error").text_content() == (
        "notes.txt: cannot decode the image (corrupt or not an image); re-export it as PNG")
    assert "has-photo" not in (page.locator("body").get_attribute("class") or "")

    sample = write_sample(tmp_path, 96, 72)
    open_photo(page, sample["image"])
    assert page.locator("#error").is_hidden()
    stray = read_gray(sample["trimap"]).copy()
    stray[:2, :2] = 60
    cv2.imwrite(str(tmp_path / "stray.png"), stray)
    page.set_input_files("#trimap-input", str(tmp_path / "stray.png"))
    wait_idle(page)
    expected = api(served, "/api/trimap", {"image": sample["image"], "trimap": tmp_path / "stray.png"}).json()
    assert page.locator("#error").text_content() == expected["error"]
    assert "--trimap-tolerant" in expected["error"]
    page.check("#tolerant")
    page.set_input_files("#trimap-input", str(tmp_path / "stray.png"))
    page.wait_for_selector("#status:has-text('trimap from stray.png')")
    assert page.locator("#error").is_hidden()
    assert [page.refused.pop(0) for _ in range(2)] == ["400 /api/image", "400 /api/trimap"]


def test_large_images_show_tile_progress(page, served, tmp_path):
    sample = write_sample(tmp_path, 256, 176)  # above the served model's tile threshold: 20 tiles
    open_photo(page, sample["image"])
    page.set_input_files("#trimap-input", str(sample["trimap"]))
    page.wait_for_selector("#status:has-text('trimap from')")
    served.matter.gate.clear()
    page.click("#predict")
    page.wait_for_selector("#status:has-text('predicting: tile 0 of 20')")
    assert page.locator("#progress").get_attribute("max") == "20"
    served.matter.gate.set()
    page.wait_for_selector("body.has-result[data-busy=false]")
    assert page.locator("#status").text_content().startswith("done in")
