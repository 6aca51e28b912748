"""The fault proxy (tests/faultproxy.py) on real sockets, in front of a real echo server."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from faultproxy import FaultProxy, Mode


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo_port) as running:
        yield running


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def opened(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    """A connection the proxy has accepted and forwards (one round trip done)."""
    sock = connect(proxy, timeout)
    assert round_trip(sock)[0] == b"ping"
    return sock


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> tuple[bytes, float]:
    started = time.monotonic()
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def wait_for(condition: object, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock, b"x" * 200_000)[0] == b"x" * 200_000
        assert round_trip(sock)[0] == b"ping"


def test_latency_per_chunk_then_back_to_pass_on_the_same_connection(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock)[1] < 0.2
        proxy.latency(0.3)
        answer, took = round_trip(sock)
        assert answer == b"ping"
        assert took >= 0.6  # 0.3 s each way
        proxy.pass_through()
        assert round_trip(sock)[1] < 0.2


def test_latency_per_connection_delays_only_the_first_chunk_of_new_connections(
    proxy: FaultProxy,
) -> None:
    with opened(proxy) as before:
        proxy.latency(0.3, per_connection=True)
        assert round_trip(before)[1] < 0.2  # opened earlier: not delayed
        with connect(proxy) as sock:
            assert round_trip(sock)[1] >= 0.6
            assert round_trip(sock)[1] < 0.2


def test_drop_closes_new_connections_and_keeps_open_ones(proxy: FaultProxy) -> None:
    with opened(proxy) as open_one:
        proxy.drop()
        with connect(proxy) as sock:
            assert sock.recv(10) == b""  # closed by the proxy at once
        assert round_trip(open_one)[0] == b"ping"
        proxy.pass_through()
        with connect(proxy) as sock:
            assert round_trip(sock)[0] == b"ping"


def test_reset_sends_rst_to_every_open_connection(proxy: FaultProxy) -> None:
    socks = [opened(proxy) for _ in range(3)]
    try:
        assert wait_for(lambda: proxy.open_connections == 3)
        proxy.reset()
        for sock in socks:
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        assert proxy.mode is Mode.PASS
        with connect(proxy) as sock:
            assert round_trip(sock)[0] == b"ping"
    finally:
        for sock in socks:
            sock.close()


def test_blackhole_holds_new_and_open_connections_then_resets_them(proxy: FaultProxy) -> None:
    with opened(proxy, timeout=0.3) as open_one:
        proxy.blackhole()
        with connect(proxy, timeout=0.3) as held:  # accepted: the connect succeeds
            for sock in (open_one, held):
                sock.sendall(b"anyone?")
                with pytest.raises(TimeoutError):
                    sock.recv(10)  # nothing answers, nothing closes
            proxy.pass_through()
            for sock in (open_one, held):
                # A stream that lost bytes cannot be resumed: it is reset, never answered.
                sock.settimeout(2)
                with pytest.raises(ConnectionResetError):
                    sock.recv(10)
    with connect(proxy) as sock:
        assert round_trip(sock)[0] == b"ping"


def test_down_refuses_connections_and_pass_listens_again_on_the_same_port(
    proxy: FaultProxy,
) -> None:
    port = proxy.port
    with opened(proxy) as open_one:
        proxy.down()
        with pytest.raises(ConnectionRefusedError):
            connect(proxy).close()
        assert round_trip(open_one)[0] == b"ping"  # left as it was
        proxy.pass_through()
        assert proxy.port == port
        with connect(proxy) as sock:
            assert round_trip(sock)[0] == b"ping"


def test_upstream_refusing_closes_the_client(echo_port: int) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
    with FaultProxy("127.0.0.1", dead_port) as proxy, connect(proxy) as sock:
        assert sock.recv(10) == b""


def test_close_ends_every_thread(echo_port: int) -> None:
    before = threading.active_count()
    proxy = FaultProxy("127.0.0.1", echo_port)
    socks = [opened(proxy) for _ in range(4)]
    proxy.close()
    for sock in socks:
        with contextlib.suppress(OSError):
            assert sock.recv(10) == b""
        sock.close()
    assert wait_for(lambda: threading.active_count() <= before)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
