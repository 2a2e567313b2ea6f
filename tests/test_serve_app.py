"""`dim serve`'s HTTP API against the real server on a free port: the same pixels and the same error words as
`dim predict`, every refusal (as one-line JSON, the server staying up), the size limits, and the queue."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import struct
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from dimatting.cli import main
from dimatting.io import read_gray, read_image
from tests.serve_helpers import CLI_TILE_FLAGS, LIMITS, write_sample


@pytest.fixture()
def client(served):
    """An HTTP client of the session's server; after each test the server must be up, idle and ungated."""
    with httpx.Client(base_url=served.url, timeout=120) as http:
        yield http
        served.matter.gate.set()
        health = http.get("/api/health").json()
        assert health["status"] == "ok" and health["queue"] == {"running": 0, "admitted": 0}


def upload(path: Path, name: str | None = None) -> tuple[str, bytes, str]:
    return name or path.name, path.read_bytes(), "application/octet-stream"


def decoded(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)


def dim_predict(*argv: object) -> int:
    return main(["predict", *map(str, argv)])


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but which holds almost no data (a decompression bomb's head)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(
        b"IEND", b""
    )


def test_health_names_the_model_device_precision_version_and_limits(client):
    health = client.get("/api/health").json()
    assert health["model"] == {"checkpoint": "stage3.pth", "stage": "2/3", "refiner": True}
    assert (health["device"], health["precision"], health["version"]) == ("cpu", "fp32", "0.1.0")
    assert health["limits"] == {"max_upload_mb": 1.0, "max_pixels": 60_000, "queue_size": 1}


@pytest.mark.parametrize("size", [(96, 72), (256, 176)], ids=["whole", "tiled"])
def test_alpha_and_cutout_equal_dim_predict_files(client, serve_checkpoint, tmp_path, size):
    sample = write_sample(tmp_path, *size)
    files = {"image": upload(sample["image"]), "trimap": upload(sample["trimap"])}
    alpha = decoded(client.post("/api/predict", files=files))
    cutout = decoded(client.post("/api/predict", params={"output": "cutout"}, files=files))
    out = tmp_path / "alpha.png"
    assert dim_predict("--image", sample["image"], "--trimap", sample["trimap"], "--checkpoint", serve_checkpoint,
                       "-o", out, "--cutout", "--device", "cpu", *CLI_TILE_FLAGS) == 0
    np.testing.assert_array_equal(alpha, read_gray(out))
    np.testing.assert_array_equal(cutout, cv2.imread(str(tmp_path / "alpha_cutout.png"), cv2.IMREAD_UNCHANGED))
    assert 0 < (alpha == 255).mean() < 1 and ((alpha > 0) & (alpha < 255)).any()


def test_mask_and_band_give_dim_predicts_trimap_and_alpha(client, serve_checkpoint, tmp_path):
    sample = write_sample(tmp_path, 96, 72)
    files = {"image": upload(sample["image"]), "mask": upload(sample["mask"])}
    alpha = decoded(client.post("/api/predict", files=files, data={"band": "9"}))
    trimap = decoded(client.post("/api/trimap", files=files, data={"band": "9"}))
    out = tmp_path / "alpha.png"
    assert dim_predict("--image", sample["image"], "--mask", sample["mask"], "--band", 9, "--save-trimap",
                       "--checkpoint", serve_checkpoint, "-o", out, "--device", "cpu") == 0
    np.testing.assert_array_equal(alpha, read_gray(out))
    np.testing.assert_array_equal(trimap, read_gray(tmp_path / "alpha_trimap.png"))
    assert set(np.unique(trimap)) == {0, 128, 255}


def test_16bit_rgba_photo_and_102_trimap_as_the_cli_reads_them_with_its_notices(
    client, serve_checkpoint, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="dimatting")
    sample = write_sample(tmp_path, 96, 72)
    photo = cv2.imread(str(sample["image"])).astype(np.uint16) * 257
    alpha_channel = np.full((*photo.shape[:2], 1), 40000, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), np.concatenate([photo, alpha_channel], axis=2))
    trimap = read_gray(sample["trimap"])
    cv2.imwrite(str(tmp_path / "pymatting.png"), np.where(trimap == 128, 102, trimap).astype(np.uint8))
    files = {"image": upload(tmp_path / "deep.png"), "trimap": upload(tmp_path / "pymatting.png")}

    response = client.post("/api/predict", files=files)
    assert response.status_code == 200, response.text
    assert sorted(json.loads(response.headers["x-dimatting-notices"])) == [
        "deep.png: RGBA image, its alpha channel is ignored (the trimap says what to matte)",
        "pymatting.png: trimap unknown value 102 mapped to 128",
    ]
    out = tmp_path / "alpha.png"
    assert dim_predict("--image", tmp_path / "deep.png", "--trimap", tmp_path / "pymatting.png",
                       "--checkpoint", serve_checkpoint, "-o", out, "--device", "cpu") == 0
    np.testing.assert_array_equal(decoded(response), read_gray(out))
    shown = decoded(client.post("/api/image", files={"image": files["image"]}))
    np.testing.assert_array_equal(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB), read_image(tmp_path / "deep.png"))


@pytest.fixture()
def bad_inputs(tmp_path) -> Path:
    """A folder of inputs that `dim predict` refuses, each for one reason."""
    sample = write_sample(tmp_path, 96, 72)
    (tmp_path / "notes.txt").write_text("not a picture\n")
    (tmp_path / "broken.png").write_bytes(sample["trimap"].read_bytes()[:40])
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((40, 50), np.uint8))
    stray = read_gray(sample["trimap"]).copy()
    stray[:3, :5] = [[7], [60], [200]]
    cv2.imwrite(str(tmp_path / "stray.png"), stray)
    cv2.imwrite(str(tmp_path / "white.png"), np.full((72, 96), 255, np.uint8))
    return tmp_path


CLI_ERRORS = {
    "not an image": ({"image": "notes.txt", "trimap": "photo_trimap.png"}, {}),
    "corrupt trimap": ({"image": "photo.png", "trimap": "broken.png"}, {}),
    "size mismatch": ({"image": "photo.png", "trimap": "small.png"}, {}),
    "stray trimap values": ({"image": "photo.png", "trimap": "stray.png"}, {}),
    "mask all foreground": ({"image": "photo.png", "mask": "white.png"}, {}),
    "band 0": ({"image": "photo.png", "mask": "photo_mask.png"}, {"band": "0"}),
}


@pytest.mark.parametrize("case", CLI_ERRORS, ids=list(CLI_ERRORS))
def test_input_errors_are_400_in_the_clis_words(client, serve_checkpoint, bad_inputs, monkeypatch, capsys, case):
    files, fields = CLI_ERRORS[case]
    monkeypatch.chdir(bad_inputs)
    options = [text for field, name in files.items() for text in (f"--{field}", name)]
    options += [text for field, value in fields.items() for text in (f"--{field}", value)]
    assert dim_predict(*options, "--checkpoint", serve_checkpoint, "-o", "out.png", "--device", "cpu") == 2
    cli_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    response = client.post("/api/predict", files={f: upload(bad_inputs / n) for f, n in files.items()}, data=fields)
    assert response.status_code == 400
    assert response.json() == {"error": cli_lines[0].removeprefix("error: ")}
    assert not (bad_inputs / "out.png").exists()


def test_stray_trimap_values_pass_with_trimap_tolerant(client, bad_inputs):
    files = {"image": upload(bad_inputs / "photo.png"), "trimap": upload(bad_inputs / "stray.png")}
    assert client.post("/api/predict", files=files, data={"trimap_tolerant": "true"}).status_code == 200


def _form(folder: Path, *fields: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    names = {"image": "photo.png", "trimap": "photo_trimap.png", "mask": "photo_mask.png"}
    return [(field, upload(folder / names[field])) for field in fields]


REQUEST_ERRORS = {
    "json body": (lambda d: {"json": {"image": "photo.png"}}, 415, "send the files as multipart/form-data"),
    "no image": (lambda d: {"files": _form(d, "trimap")}, 400, "no image in the form"),
    "trimap and mask": (lambda d: {"files": _form(d, "image", "trimap", "mask")}, 400,
                        "photo.png: give exactly one of trimap or mask"),
    "neither": (lambda d: {"files": _form(d, "image")}, 400, "photo.png: give exactly one of trimap or mask"),
    "unknown field": (lambda d: {"files": [*_form(d, "image", "trimap"), ("alpha", upload(d / "photo.png"))]},
                      400, "unknown form field 'alpha'"),
    "field twice": (lambda d: {"files": _form(d, "image", "image", "trimap")}, 400,
                    "form field 'image' sent twice"),
    "band not a number": (lambda d: {"files": _form(d, "image", "mask"), "data": {"band": "wi\nde"}}, 400,
                          "band 'wide': give the unknown band width in pixels"),
    "band too wide": (lambda d: {"files": _form(d, "image", "mask"), "data": {"band": "101"}}, 400,
                      "band 101: this server builds bands of at most 100 px"),
    "tolerant not a flag": (lambda d: {"files": _form(d, "image", "trimap"), "data": {"trimap_tolerant": "maybe"}},
                            400, "trimap_tolerant 'maybe': give true or false"),
    "output": (lambda d: {"params": {"output": "jpeg"}, "files": _form(d, "image", "trimap")}, 400,
               "output=jpeg: use alpha or cutout"),
    "progress id": (lambda d: {"params": {"progress": "../x"}, "files": _form(d, "image", "trimap")}, 400,
                    "progress id: use 1-64 letters"),
    "malformed multipart": (lambda d: {"content": b"no boundary here",
                                       "headers": {"content-type": "multipart/form-data; boundary=xyz"}},
                            400, "malformed multipart/form-data body"),
}


@pytest.mark.parametrize("case", REQUEST_ERRORS, ids=list(REQUEST_ERRORS))
def test_bad_requests_are_one_line_json_errors(client, tmp_path, case):
    write_sample(tmp_path, 96, 72)
    request, status, start = REQUEST_ERRORS[case]
    response = client.post("/api/predict", **request(tmp_path))
    assert response.status_code == status
    assert response.json()["error"].startswith(start) and "\n" not in response.json()["error"]


def test_unknown_paths_and_methods_are_json_errors(client):
    missing = client.get("/api/nope")
    assert missing.status_code == 404 and missing.json()["error"].startswith("/api/nope: not found; the page is GET /")
    wrong = client.get("/api/predict")
    assert wrong.status_code == 405 and wrong.json()["error"].startswith("GET /api/predict: not allowed")
    assert client.get("/api/progress/unknown-id").status_code == 404


def test_images_over_max_pixels_are_413_from_their_header(client, tmp_path):
    sample = write_sample(tmp_path, 96, 72)
    big = write_sample(tmp_path, 300, 250, stem="big")  # 75,000 pixels > 60,000
    cases = {
        "image": ({"image": upload(big["image"]), "trimap": upload(big["trimap"])},
                  "big.png: 300x250 pixels (0.1 MP) is over this server's limit of 0.06 MP; downscale the image"),
        "bomb": ({"image": ("bomb.png", png_header_only(100_000, 100_000), "image/png"),
                  "trimap": upload(sample["trimap"])}, "bomb.png: its declared size is over this server's limit"),
        "trimap": ({"image": upload(sample["image"]), "trimap": ("t.png", png_header_only(400, 400), "image/png")},
                   "t.png: 400x400 pixels (0.2 MP) is over this server's limit of 0.06 MP; downscale the trimap"),
    }
    for files, message in cases.values():
        for path in ("/api/predict", "/api/trimap"):
            response = client.post(path, files=files)
            assert response.status_code == 413 and response.json()["error"].startswith(message)
    response = client.post("/api/image", files={"image": ("h.png", png_header_only(1000, 1000), "image/png")})
    assert response.status_code == 413


def test_uploads_over_the_limit_are_413(client, tmp_path):
    sample = write_sample(tmp_path, 96, 72)
    noise = np.random.default_rng(0).integers(0, 256, 3 * LIMITS["max_upload_bytes"], np.uint8).tobytes()
    files = {"image": ("huge.png", noise, "image/png"), "trimap": upload(sample["trimap"])}
    response = client.post("/api/predict", files=files)
    assert response.status_code == 413
    assert response.json()["error"].startswith("the upload (3.0 MiB) is over this server's limit of 1 MiB")
    request = client.build_request("POST", "/api/predict", files=files)
    body = request.read()
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: counted as it comes
    response = client.post("/api/predict", content=chunks, headers={"content-type": request.headers["content-type"]})
    assert response.status_code == 413 and response.json()["error"].startswith("the upload is over")


def test_a_huge_declared_upload_is_refused_before_its_body(served):
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {50 * 2**30}\r\n"
                     "Content-Type: multipart/form-data; boundary=b\r\n\r\n".encode())
        answer = sock.makefile("rb").read().decode()
    assert answer.startswith("HTTP/1.1 413") and "the upload (51200.0 MiB) is over" in answer


def _post_in_thread(pool, served, files, watch_id=None):
    params = {"progress": watch_id} if watch_id else {}
    return pool.submit(httpx.post, f"{served.url}/api/predict", files=files, params=params, timeout=120)


def _progress_of(client, watch_id, wanted):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = client.get(f"/api/progress/{watch_id}")
        if response.status_code == 200 and all(response.json()[k] == v for k, v in wanted.items()):
            return response.json()
        time.sleep(0.02)
    raise AssertionError(f"progress of {watch_id} never reached {wanted}")


def test_one_prediction_at_a_time_a_bounded_queue_and_503_beyond(client, served, tmp_path):
    samples = [write_sample(tmp_path / str(i), 96, 72, seed=i) for i in range(2)]
    tiled = write_sample(tmp_path / "tiled", 256, 176, seed=2)
    forms = [{"image": upload(s["image"]), "trimap": upload(s["trimap"])} for s in (*samples, tiled)]
    alone = [decoded(client.post("/api/predict", files=form)) for form in forms[:2]]
    served.matter.gate.clear()
    calls = served.matter.calls
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = _post_in_thread(pool, served, forms[2], "first")
        assert _progress_of(client, "first", {"stage": "predicting", "total": 20, "done": 0})["ahead"] == 0
        second = _post_in_thread(pool, served, forms[0], "second")
        assert _progress_of(client, "second", {"stage": "waiting"})["ahead"] == 1
        busy = client.post("/api/predict", files=forms[1])
        assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        assert busy.json()["error"].startswith("the server is busy (2 prediction(s) running or waiting")
        served.matter.gate.set()
        assert first.result().status_code == 200 and decoded(first.result()).shape == (176, 256)
        np.testing.assert_array_equal(decoded(second.result()), alone[0])
    np.testing.assert_array_equal(decoded(client.post("/api/predict", files=forms[1])), alone[1])
    assert served.matter.calls == calls + 3 and served.matter.most_at_once == 1


def test_a_request_abandoned_in_the_queue_never_runs(client, served, tmp_path):
    sample = write_sample(tmp_path, 96, 72)
    form = {"image": upload(sample["image"]), "trimap": upload(sample["trimap"])}
    served.matter.gate.clear()
    calls = served.matter.calls
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = _post_in_thread(pool, served, form, "running")
        _progress_of(client, "running", {"stage": "predicting"})
        request = client.build_request("POST", "/api/predict", params={"progress": "gone"}, files=form)
        host, port = served.url.removeprefix("http://").split(":")
        head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(f"POST {request.url.raw_path.decode()} HTTP/1.1\r\n{head}\r\n".encode() + request.read())
            _progress_of(client, "gone", {"stage": "waiting"})
        served.matter.gate.set()
        assert first.result().status_code == 200
    deadline = time.monotonic() + 30
    while client.get("/api/health").json()["queue"]["admitted"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.matter.calls == calls + 1


def test_other_sites_cannot_use_the_server(client, tmp_path):
    sample = write_sample(tmp_path, 96, 72)
    files = {"image": upload(sample["image"]), "trimap": upload(sample["trimap"])}
    foreign = client.post("/api/predict", files=files, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["error"].startswith("cross-origin request from")
    rebound = client.get("/api/health", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 400 and rebound.json()["error"].startswith("host 'evil.example:8000' is not")
    own = client.post("/api/predict", files=files, headers={"Origin": str(client.base_url).rstrip("/")})
    assert own.status_code == 200
    assert "default-src 'self'" in own.headers["content-security-policy"]
    assert own.headers["x-content-type-options"] == "nosniff"


def test_the_page_and_its_scripts_come_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="overlay">' in page.text and "http://" not in page.text and "https://" not in page.text
    for name in ("app.js", "api.js", "png.js", "trimap.js", "view.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and len(asset.content) > 500
        assert "https://" not in asset.text and "http://" not in asset.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../app.py").status_code == 404
