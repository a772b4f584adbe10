"""tests/tcp_proxy.py, the outage proxy of the fault tests: a connection that both ends closed
gives its two sockets back (the fault module once ran its process out of descriptors, two per
S3 request through the proxy), and `down` cuts what is open."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.tcp_proxy import TcpProxy


def echo_once_server() -> tuple[socket.socket, int]:
    """A server that answers each connection once and closes it (as moto's server does)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(1024).upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_closed_connections_give_their_sockets_back():
    server, port = echo_once_server()
    proxy = TcpProxy("127.0.0.1", port)
    proxy.up()
    try:
        before = descriptors()
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", proxy.port)) as conn:
                conn.sendall(b"ping")
                assert conn.recv(1024) == b"PING"
        assert wait_for(lambda: proxy.open_connections() == 0), proxy.open_connections()
        assert wait_for(lambda: descriptors() <= before + 4), (before, descriptors())
    finally:
        proxy.down()
        server.close()


def test_down_cuts_open_connections_refuses_new_ones_and_up_accepts_again():
    server, port = echo_once_server()
    proxy = TcpProxy("127.0.0.1", port)
    proxy.up()
    try:
        held = socket.create_connection(("127.0.0.1", proxy.port))
        assert wait_for(lambda: proxy.open_connections() == 1)
        proxy.down()
        held.settimeout(5)
        assert held.recv(1024) == b""  # cut: the peer's end is closed
        held.close()
        with pytest.raises(ConnectionRefusedError):  # an outage: nothing listens any more
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        proxy.up()
        with socket.create_connection(("127.0.0.1", proxy.port)) as conn:
            conn.sendall(b"again")
            assert conn.recv(1024) == b"AGAIN"
    finally:
        proxy.down()
        server.close()
