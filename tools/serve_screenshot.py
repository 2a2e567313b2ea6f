"""Make the README's screenshot of `dim serve`'s page, the way the page tests drive it.

    python tools/serve_screenshot.py --checkpoint CKPT --image PHOTO --trimap TRIMAP -o docs/images/serve.png

Starts `dim serve` on a free port, opens the page in Debian's headless Chromium (tests/serve_helpers.py),
opens the photo and its trimap, paints an unknown stroke, predicts, goes back to the trimap view and saves the
window as a 256-colour PNG (small enough for the repository).
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.serve_helpers import chromium_page  # noqa: E402  (the repository root is on the path only now)


def photo_point(page, x: float, y: float) -> tuple[float, float]:
    box = page.locator("#photo").bounding_box()
    scale = box["width"] / int(page.locator("#photo").get_attribute("width"))
    return box["x"] + x * scale, box["y"] + y * scale


def drive(page, url: str, image: Path, trimap: Path) -> None:
    page.goto(url)
    page.wait_for_selector("#model:has-text('DIM stage')")
    page.set_input_files("#image-input", str(image))
    page.wait_for_selector("body.has-photo[data-busy=false]")
    page.set_input_files("#trimap-input", str(trimap))
    page.wait_for_selector("#status:has-text('trimap from')")
    width, height = Image.open(image).size
    page.keyboard.press("u")
    start = photo_point(page, 0.22 * width, 0.30 * height)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 50, start[1] - 40, steps=8)
    page.mouse.up()
    page.click("#predict")
    page.wait_for_selector("body.has-result[data-busy=false]", timeout=600_000)
    page.click("button.view[data-view=trimap]")
    page.mouse.move(start[0] + 50, start[1] - 40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--trimap", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "dimatting.cli", "serve", "--checkpoint", args.checkpoint,
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"open (http://\S+) in a browser", server.stdout.readline()).group(1)
        with tempfile.TemporaryDirectory() as profile, chromium_page(Path(profile), 1280, 800) as page:
            drive(page, url, args.image, args.trimap)
            shot = Path(profile) / "shot.png"
            page.screenshot(path=str(shot))
            picture = Image.open(shot).convert("RGB")
            picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
                args.output, optimize=True)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
