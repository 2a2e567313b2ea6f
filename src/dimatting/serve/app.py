"""The ASGI app of `dim serve`: the page, the JSON/PNG API, and errors as one-line JSON.

Routes: `GET /` the page (static files under /static); `GET /api/health`; `POST /api/predict` (image +
trimap, or image + mask [+ band] -> alpha or cutout PNG); `POST /api/image` (the photo as the model sees it,
for the page to paint on); `POST /api/trimap` (the checked trimap, or one built from a mask, as a PNG);
`GET /api/progress/<id>` (where a prediction sent with `?progress=<id>` stands). Every error is a 4xx (5xx
for a bug) with `{"error": "<one line>"}`; the server keeps running after any of them.
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dimatting import __version__
from dimatting.errors import DimattingError
from dimatting.io import Upload
from dimatting.serve import jobs
from dimatting.serve.device import DeviceQueue
from dimatting.serve.guard import LocalGuard
from dimatting.serve.uploads import MIB, check_pixels, printable, read_form
from dimatting.trimap import DEFAULT_BAND

if TYPE_CHECKING:
    from dimatting.inference import Matter

logger = logging.getLogger("dimatting.serve")

PAIR_FIELDS = ("image", "trimap", "mask", "band", "trimap_tolerant")
# the mask's erosion costs band^2 per pixel (400 px: ~3 min for 4 MP), so a request may not ask for more
MAX_BAND = 100
_PROGRESS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STATIC_DIR = Path(__file__).with_name("static")
API = "GET /api/health, POST /api/predict, POST /api/image, POST /api/trimap, GET /api/progress/<id>"


@dataclass(frozen=True)
class Settings:
    """The server's limits and what /api/health reports besides the model."""

    max_upload_bytes: int = 100 * MIB
    max_pixels: int = 64_000_000
    queue_size: int = 4
    allowed_hosts: frozenset[str] | None = None  # Host header names accepted; None: any (see `guard`)
    checkpoint: str = ""  # file name shown by /api/health


@dataclass
class _Pair:
    image: Upload
    trimap: Upload | None
    mask: Upload | None
    band: int
    tolerant: bool


def _fields(form: dict[str, Upload], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(form) - set(allowed))
    if unknown:
        raise HTTPException(400, f"unknown form field '{unknown[0]}'; send {', '.join(allowed)}")
    if "image" not in form:
        raise HTTPException(400, "no image in the form; send it as the 'image' field (curl -F image=@photo.jpg)")


def _flag(upload: Upload | None) -> bool:
    text = upload.data.decode("latin-1").strip().lower() if upload is not None else "false"
    if text not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
        raise HTTPException(400, f"trimap_tolerant '{printable(text)}': give true or false")
    return text in ("1", "true", "yes", "on")


def _pair(form: dict[str, Upload]) -> _Pair:
    """image + trimap, or image + mask [+ band], like `dim predict --trimap` / `--mask --band`."""
    _fields(form, PAIR_FIELDS)
    image, trimap, mask = form["image"], form.get("trimap"), form.get("mask")
    if (trimap is None) == (mask is None):
        raise HTTPException(400, f"{image}: give exactly one of trimap or mask")
    band = DEFAULT_BAND
    if "band" in form:
        text = form["band"].data.decode("latin-1").strip()
        if not re.fullmatch(r"[+-]?\d{1,9}", text):
            raise HTTPException(
                400, f"band '{printable(text)}': give the unknown band width in pixels, e.g. {DEFAULT_BAND}"
            )
        band = int(text)
        if band > MAX_BAND:
            raise HTTPException(400, f"band {band}: this server builds bands of at most {MAX_BAND} px (the time "
                                "grows with the square of the band); paint a wider unknown region instead")
    return _Pair(image, trimap, mask, band, _flag(form.get("trimap_tolerant")))


def _check_pixels(request: Request, pair: _Pair) -> None:
    limit = request.app.state.settings.max_pixels
    check_pixels(pair.image, "image", limit)
    for upload, what in ((pair.trimap, "trimap"), (pair.mask, "mask")):
        if upload is not None:
            check_pixels(upload, what, limit)


def _png(data: bytes, messages: list[str]) -> Response:
    headers = {"Cache-Control": "no-store"}
    if messages:  # JSON with ASCII escapes: header values must be Latin-1
        headers["X-Dimatting-Notices"] = json.dumps(messages)
    return Response(data, media_type="image/png", headers=headers)


async def page(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def health(request: Request) -> JSONResponse:
    state = request.app.state
    matter, settings = state.matter, state.settings
    return JSONResponse({
        "status": "ok",
        "version": __version__,
        "model": {"checkpoint": settings.checkpoint, "stage": "2/3" if matter.refines else "1",
                  "refiner": matter.refines},
        "device": str(matter.device),
        "precision": matter.precision,
        "limits": {"max_upload_mb": settings.max_upload_bytes / MIB, "max_pixels": settings.max_pixels,
                   "queue_size": settings.queue_size},
        "queue": {"running": state.queue.running, "admitted": state.queue.admitted},
    })


async def progress(request: Request) -> JSONResponse:
    watched = request.app.state.queue.watched.get(request.path_params["id"])
    if watched is None:
        raise HTTPException(404, f"no prediction in progress with id '{printable(request.path_params['id'])}'")
    return JSONResponse(watched.as_json())


async def image(request: Request) -> Response:
    form = await read_form(request, request.app.state.settings.max_upload_bytes)
    _fields(form, ("image",))
    check_pixels(form["image"], "image", request.app.state.settings.max_pixels)
    return _png(*await run_in_threadpool(jobs.image_png, form["image"]))


async def trimap(request: Request) -> Response:
    pair = _pair(await read_form(request, request.app.state.settings.max_upload_bytes))
    _check_pixels(request, pair)
    return _png(*await run_in_threadpool(jobs.trimap_png, pair.image, pair.trimap, pair.mask, pair.band, pair.tolerant))


async def predict(request: Request) -> Response:
    state = request.app.state
    output = request.query_params.get("output", "alpha")
    if output not in jobs.OUTPUTS:
        raise HTTPException(400, f"output={printable(output)}: use alpha or cutout")
    watch_id = request.query_params.get("progress")
    if watch_id is not None and not _PROGRESS_ID.fullmatch(watch_id):
        raise HTTPException(400, "progress id: use 1-64 letters, digits, '-' or '_' (e.g. a random UUID)")
    async with state.queue.admit(watch_id) as watched:
        pair = _pair(await read_form(request, state.settings.max_upload_bytes))
        _check_pixels(request, pair)
        rgb, levels, notes = await run_in_threadpool(
            jobs.read_inputs, pair.image, pair.trimap, pair.mask, pair.band, pair.tolerant
        )
        async with state.queue.model(watched):
            if await request.is_disconnected():  # the client gave up while queued: free the model for others
                return Response(status_code=499)
            start = time.perf_counter()
            png, more = await run_in_threadpool(
                jobs.predict_png, state.matter, rgb, levels, output, watched, pair.trimap or pair.mask
            )
    logger.info("%s %dx%d -> %s in %.1f s", pair.image, rgb.shape[1], rgb.shape[0], output,
                time.perf_counter() - start)
    return _png(png, notes + more)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail
    path = printable(request.url.path, 100)
    if exc.status_code == 404 and message == "Not Found":  # raised by the router
        message = f"{path}: not found; the page is GET / and the API is {API}"
    elif exc.status_code == 405:
        message = f"{request.method} {path}: not allowed; the API is {API}"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _input_error(request: Request, exc: DimattingError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's fault: the traceback goes to the server's log (uvicorn prints it)."""
    line = " ".join(str(exc).split())[:300]
    return JSONResponse({"error": f"internal error ({type(exc).__name__}: {line}); see the server's log"},
                        status_code=500)


def create_app(matter: Matter, settings: Settings) -> Starlette:
    """The app for a loaded model. Raises Pillow's own decompression-bomb ceiling to at least
    `settings.max_pixels`, so that the server's limit is the one that decides (and says so)."""
    if Image.MAX_IMAGE_PIXELS is not None and settings.max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = settings.max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # our 413 says it
    routes = [
        Route("/", page),
        Route("/api/health", health),
        Route("/api/progress/{id}", progress),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/image", image, methods=["POST"]),
        Route("/api/trimap", trimap, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(LocalGuard, allowed_hosts=settings.allowed_hosts)],
        exception_handlers={HTTPException: _http_error, DimattingError: _input_error, Exception: _bug},
    )
    app.state.matter = matter
    app.state.settings = settings
    app.state.queue = DeviceQueue(settings.queue_size)
    return app
