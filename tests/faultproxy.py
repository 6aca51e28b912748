"""A TCP fault proxy for tests: one listening port on 127.0.0.1 in front of one upstream.

The test changes what the proxy does while traffic flows through it::

    with FaultProxy("127.0.0.1", redis_port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        ...
        proxy.latency(2.0)      # every chunk waits 2 s before it is forwarded
        proxy.blackhole()       # accept and hold; forward nothing, answer nothing
        proxy.drop()            # close new connections at once (open ones keep flowing)
        proxy.reset()           # RST every open connection, now (SO_LINGER 0)
        proxy.down()            # stop listening: connecting is refused
        proxy.pass_through()    # back to normal (listening again on the same port)

Each connection is two threads pumping bytes, one per direction. A connection that lost a
byte to the blackhole can never be resumed (its stream is torn), so leaving the blackhole
resets those connections: their clients see a reset, not a reply to someone else's request.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from enum import StrEnum
from types import TracebackType
from typing import Self

_CHUNK = 65536
_POLL_S = 0.05  # how quickly idle pumps and the listener notice a change of mode or close()


class Mode(StrEnum):
    PASS = "pass"
    DROP = "drop"
    BLACKHOLE = "blackhole"
    DOWN = "down"


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST instead of a FIN (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _stop_listening(listener: socket.socket) -> None:
    """Stop listening now. ``close()`` alone would not: the acceptor thread blocked in
    ``accept()`` keeps the socket listening (and completing handshakes) until it returns;
    ``shutdown()`` wakes it at once."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


class _Connection:
    """A client socket, its upstream socket and the two pumps between them."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self.torn = False
        """Bytes were swallowed by the blackhole: the stream can never be resumed."""

    def close(self, *, rst: bool = False) -> None:
        # Not once only: the upstream socket may be assigned after a reset() closed the rest.
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if rst:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.close()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1:<port>`` forwarding to ``upstream_host:upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._mode = Mode.PASS
        self._latency_s = 0.0
        self._per_connection = False
        self._connections: set[_Connection] = set()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._listener: socket.socket | None = self._listen(port)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._acceptor.start()

    # -- control ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for conn in self._connections if not conn.closed.is_set())

    def pass_through(self) -> None:
        """Forward everything at once again: no latency, listening, blackholed streams reset."""
        with self._lock:
            self._latency_s = 0.0
            leaving_blackhole = self._mode is Mode.BLACKHOLE
            self._mode = Mode.PASS
            torn = [conn for conn in self._connections if conn.torn]
            if self._listener is None:
                self._listener = self._listen(self.port)
        if leaving_blackhole:
            for conn in torn:
                conn.close(rst=True)

    def latency(self, seconds: float, *, per_connection: bool = False) -> None:
        """Delay every chunk by ``seconds`` (or, ``per_connection``, only the first chunk each
        way of every connection opened from now on)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency_s = seconds
            self._per_connection = per_connection

    def drop(self) -> None:
        """Accept new connections and close them at once; open ones keep flowing."""
        self._set(Mode.DROP)

    def blackhole(self) -> None:
        """Accept and hold new connections; forward nothing and answer nothing on any."""
        self._set(Mode.BLACKHOLE)

    def down(self) -> None:
        """Stop listening: new connections are refused. Open ones are left as they are (call
        :meth:`reset` too for a dead server)."""
        with self._lock:
            self._mode = Mode.DOWN
            listener, self._listener = self._listener, None
        if listener is not None:
            _stop_listening(listener)

    def reset(self) -> None:
        """RST every open connection now (the mode stays as it is)."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.close(rst=True)

    def close(self) -> None:
        """Stop listening, close every connection and join every thread."""
        self._closing.set()
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            _stop_listening(listener)
        self.reset()
        self._acceptor.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- machinery --------------------------------------------------------------------------

    def _set(self, mode: Mode) -> None:
        with self._lock:
            self._mode = mode
            if self._listener is None:
                self._listener = self._listen(self.port)

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.settimeout(_POLL_S)
        return listener

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(_POLL_S)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue  # a timeout, or the listener was closed by down()/close()
            client.setblocking(True)
            self._spawn(self._serve, _Connection(client))

    def _spawn(self, target: object, conn: _Connection) -> None:
        thread = threading.Thread(target=target, args=(conn,), daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _serve(self, conn: _Connection) -> None:
        with self._lock:
            mode, self._connections = self._mode, {*self._connections, conn}
            first_delay = self._latency_s if self._per_connection else 0.0
        try:
            if mode is Mode.DROP:
                return
            if mode is Mode.BLACKHOLE:
                conn.torn = True  # held from the start: it never gets an upstream
                self._swallow(conn)
                return
            try:
                conn.upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                return  # the upstream refused: the client sees its connection closed
            conn.upstream.settimeout(None)
            backward = threading.Thread(
                target=self._pump, args=(conn, conn.upstream, conn.client, first_delay), daemon=True
            )
            with self._lock:
                self._threads.append(backward)
            backward.start()
            self._pump(conn, conn.client, conn.upstream, first_delay)
        finally:
            conn.close()
            with self._lock:
                self._connections.discard(conn)

    def _swallow(self, conn: _Connection) -> None:
        """Read and discard what the client sends until the connection is reset or closed."""
        while not conn.closed.is_set() and not self._closing.is_set():
            data = self._receive(conn.client)
            if data == b"":
                return

    @staticmethod
    def _receive(source: socket.socket) -> bytes | None:
        """The next chunk from ``source``; ``None``: nothing yet; ``b""``: closed."""
        try:
            readable, _, _ = select.select([source], [], [], _POLL_S)
            if not readable:
                return None
            return source.recv(_CHUNK)
        except (OSError, ValueError):  # reset, or closed under us (ValueError: fd -1)
            return b""

    def _pump(
        self, conn: _Connection, source: socket.socket, target: socket.socket, first_delay: float
    ) -> None:
        delay_once = first_delay
        while not conn.closed.is_set() and not self._closing.is_set():
            data = self._receive(source)
            if data is None:
                continue
            if data == b"":
                break
            if self._mode is Mode.BLACKHOLE or conn.torn:
                conn.torn = True
                continue
            delay = delay_once or (0.0 if self._per_connection else self._latency_s)
            delay_once = 0.0
            if delay:
                time.sleep(delay)
            try:
                target.sendall(data)
            except OSError:
                break
        conn.close()
