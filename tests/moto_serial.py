# Copyright 2026 stalwart contributors
"""moto's server, applying one request at a time: ``python tests/moto_serial.py -H HOST -p PORT``.

moto's DynamoDB applies a write in steps without a lock (UpdateItem on a new key first stores the
bare key, then applies the update in place; a conditional write checks, then writes), so
concurrent requests on moto's threaded server can see half-written items, let two conditional
creates both win, and lose increments. Real DynamoDB applies every single-item write and every
transaction atomically, which is what the storage contract's concurrency tests assume. One lock
around the WSGI app restores that; connections are still accepted concurrently.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


def serialized(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    lock = threading.Lock()

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            response = app(environ, start_response)
            try:
                return list(response)  # produce the whole body while holding the lock
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()

    return handle


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host, args.port, serialized(app), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
