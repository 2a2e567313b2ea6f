"""Running the app: bind the socket, load the model, serve with uvicorn until Ctrl+C.

The socket is bound before the (slow) model load, so a taken port fails at once and the printed URL has the
real port even with `--port 0`; browsers that connect early wait in the listen backlog until the model is in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from pathlib import Path

import uvicorn

from dimatting.errors import InputError
from dimatting.serve.app import Settings, create_app
from dimatting.serve.guard import allowed_hosts_for
from dimatting.serve.uploads import MIB

logger = logging.getLogger("dimatting.serve")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port` (0: a free port), or an `InputError` saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: not an address of this machine ({exc.strerror}); use 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror}); pick another --port "
            "(0 picks a free one)"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The address to open in a browser (a wildcard address becomes 127.0.0.1 on this machine)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    checkpoint: str, host: str, port: int, device: str, precision: str, settings: Settings
) -> None:
    """Serve `checkpoint` until interrupted, with `settings`' limits (its host names and checkpoint name
    follow from `host` and `checkpoint`)."""
    from dimatting.inference import load_model

    with bind(host, port) as sock:
        matter = load_model(checkpoint, device=device, precision=precision)
        settings = dataclasses.replace(
            settings, allowed_hosts=allowed_hosts_for(host), checkpoint=Path(checkpoint).name
        )
        app = create_app(matter, settings)
        if settings.allowed_hosts is None:
            logger.warning("listening on %s: anyone who can reach this machine can use the server (no login)", host)
        print(f"dim serve: DIM stage {'2/3' if matter.refines else '1'} on {matter.device} ({matter.precision}), "
              f"uploads up to {settings.max_upload_bytes / MIB:g} MiB and {settings.max_pixels / 1e6:g} MP; "
              f"open {url_of(sock)} in a browser (Ctrl+C stops)", flush=True)
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl+C it shut down for: no error
            uvicorn.Server(config).run(sockets=[sock])
    print("dim serve: stopped", flush=True)
