"""Reading a request's files: the multipart body within the upload limit, image sizes from their headers.

Both limits act before any image is decoded. The body is counted while it streams in, so an oversized upload
is refused after at most the limit, and kept in memory (the limit bounds it), so the server writes no file.
The pixel count comes from the image header alone: a small file can declare an image of billions of pixels
(a decompression bomb) that would exhaust memory if it were decoded first.
"""

from __future__ import annotations

import io
import re
import unicodedata

from PIL import Image
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import Request

from dimatting.io import Upload, undecodable

MIB = 1024 * 1024
_NAME_LIMIT = 120  # characters of a client's file name kept for messages


def printable(text: str, limit: int = 40) -> str:
    """Client text fit to quote in a one-line message: no control characters (no line breaks), cut short."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()[:limit]


def display_name(file_name: bytes | None, field: str) -> str:
    """The client's file name as a label for messages: base name only, printable; the field name when the
    client sent none. It is only ever printed, never used as a path."""
    text = re.split(r"[\\/]", (file_name or b"").decode("utf-8", "replace"))[-1]
    return printable(text, _NAME_LIMIT) or field


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(
            415, "send the files as multipart/form-data, e.g. curl -F image=@photo.jpg -F trimap=@trimap.png"
        )
    return options[b"boundary"]


def _too_large(size: int | None, max_bytes: int) -> HTTPException:
    what = f"the upload ({size / MIB:.1f} MiB)" if size is not None else "the upload"
    return HTTPException(
        413, f"{what} is over this server's limit of {max_bytes / MIB:g} MiB; send smaller files or "
        "restart dim serve with a larger --max-upload-mb",
    )


async def read_form(request: Request, max_bytes: int) -> dict[str, Upload]:
    """The multipart/form-data body as field name -> `Upload` (file fields labelled by their file name,
    plain fields by the field name). 415 if the body is not multipart, 413 past `max_bytes`, 400 if it is
    malformed or sends a field twice."""
    boundary = _boundary(request.headers.get("content-type"))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    parts: dict[str, Upload] = {}

    def on_part(part: Field | File) -> None:
        field = (part.field_name or b"").decode("utf-8", "replace")
        if field in parts:
            raise HTTPException(400, f"form field '{field}' sent twice; send each file once")
        if isinstance(part, File):
            part.file_object.seek(0)
            parts[field] = Upload(display_name(part.file_name, field), part.file_object.read())
        else:
            parts[field] = Upload(field, part.value or b"")

    # files stay in memory: python-multipart would spill those over 1 MiB to the system's temporary folder
    parser = FormParser("multipart/form-data", on_part, on_part, boundary=boundary,
                        config={"MAX_MEMORY_FILE_SIZE": max_bytes + 1})
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise _too_large(None, max_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        reason = " ".join(str(exc).split())
        raise HTTPException(
            400, f"malformed multipart/form-data body ({reason}); send the files as curl -F does"
        ) from None
    return parts


def check_pixels(upload: Upload, what: str, max_pixels: int) -> None:
    """413 when the header of `upload` declares more than `max_pixels` pixels; the CLI's error (400) when
    Pillow cannot read the header at all (not an image). Nothing is decoded here."""
    try:
        with Image.open(io.BytesIO(upload.data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own ceiling, set above ours by `create_app`
        width = height = None
    except Exception:  # Pillow raises many types for a header it cannot parse; all mean "not an image"
        raise undecodable(upload, what) from None
    if width is None or width * height > max_pixels:
        size = "its declared size" if width is None else f"{width}x{height} pixels ({width * height / 1e6:.1f} MP)"
        raise HTTPException(
            413, f"{upload}: {size} is over this server's limit of {max_pixels / 1e6:g} MP; downscale the "
            f"{what} or restart dim serve with a larger --max-pixels",
        )

