"""A TCP forwarder on loopback that a test can take down and bring back: an outage of a real
server (S3, Redis) without losing the server's state."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown wakes the thread blocked in accept(): a close alone leaves the socket
            # listening (and accepting) until that call returns
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            ends = threading.Semaphore(0)  # released once by each direction when it ends
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, ends), daemon=True).start()
            threading.Thread(target=self._close_after, args=(client, upstream, ends), daemon=True).start()

    def open_connections(self) -> int:
        """Forwarded connections not closed yet (each holds two sockets)."""
        with self._lock:
            return len(self._connections) // 2

    def _close_after(self, client: socket.socket, upstream: socket.socket, ends: threading.Semaphore) -> None:
        """Once both directions ended, close both sockets: a server that closes its connection
        after each response (moto's does) would otherwise leave two descriptors per request
        open in the test process until it ran out of them."""
        ends.acquire()
        ends.acquire()
        with self._lock:
            for conn in (client, upstream):
                with contextlib.suppress(ValueError):
                    self._connections.remove(conn)
                conn.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, ends: threading.Semaphore) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            ends.release()
