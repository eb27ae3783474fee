"""Real HTTP S3 endpoints for the storage tests, on 127.0.0.1 only.

* ``start_moto()``: moto's standalone S3 server in a thread of the test process.
* ``FlakyProxy``: a reverse proxy in front of it that fails chosen requests the way real
  object stores and networks do (500, 503 SlowDown, a dropped or reset connection before
  or after the request reached the server, a body cut short, an answer slower than the
  client waits, 501 for conditional writes).
* ``FaultPlan``: a seeded plan for it that fails a given share of requests, each in one of
  those ways, and whose rate can be changed while a run goes on.
"""

from __future__ import annotations

import collections
import http.client
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

from moto.server import ThreadedMotoServer

LOOPBACK = "127.0.0.1"

#: What the proxy does with one request.
OK, SLOWDOWN, DROP, DROP_AFTER, TRUNCATE, NOT_IMPLEMENTED = (
    "ok", "slowdown", "drop", "drop_after", "truncate", "not_implemented")
#: ... 500 InternalError; a TCP reset (SO_LINGER 0) before the server saw the request, or
#: after it acted; an answer delayed below the client's read timeout, or beyond it (the
#: request reaches the server all the same).
ERROR_500, RESET, RESET_AFTER, SLOW, TIMEOUT = "error_500", "reset", "reset_after", "slow", "timeout"
#: A body cut short (``Content-Length`` promised) and the connection then reset, not closed:
#: the client's read fails mid-body (urllib3's ProtocolError, even while botocore itself
#: reads an error answer).
CUT_RESET = "cut_reset"
#: A body of the promised length with one byte flipped (a bad disk, a broken middlebox).
FLIP = "flip"
#: Every way a request can fail, for ``FaultPlan``.
FAULTS = (ERROR_500, SLOWDOWN, DROP, DROP_AFTER, RESET, RESET_AFTER, TRUNCATE, CUT_RESET, SLOW, TIMEOUT)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade",
               "content-length"}


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """moto's S3 server on a free loopback port; returns it and its endpoint URL."""
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def put_directly(bucket: str, keys: list[str], value: bytes) -> None:
    """Writes objects through the moto server's own backend (same process), skipping HTTP."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(bucket, key, value)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def seeded_faults(seed: int, slowdown: float = 0.30, drop: float = 0.08, drop_after: float = 0.04,
                  truncate: float = 0.05) -> Callable[[str, str, dict], str]:
    """A deterministic fault plan: the n-th request's fate depends only on the seed."""
    rng = random.Random(seed)

    def decide(method: str, path: str, headers) -> str:
        r = rng.random()
        if r < slowdown:
            return SLOWDOWN
        r -= slowdown
        if r < drop:
            return DROP
        r -= drop
        if r < drop_after:
            return DROP_AFTER
        r -= drop_after
        if r < truncate and method == "GET":
            return TRUNCATE
        return OK

    return decide


class FaultPlan:
    """Fails ``rate`` of the requests (0..1), each in one of ``kinds`` chosen evenly; seeded.

    ``SLOW`` is not counted as a failure by the client (the answer comes in time) but is
    one of the kinds all the same: a slow store is one of the ways a store misbehaves.
    ``rate`` may be changed at any time (``plan.rate = 1.0``: nothing gets through).
    """

    def __init__(self, seed: int, rate: float, kinds: tuple[str, ...] = FAULTS):
        self.rng = random.Random(seed)
        self.rate = rate
        self.kinds = kinds
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, headers) -> str:
        with self._lock:
            if self.rng.random() >= self.rate:
                return OK
            return self.rng.choice(self.kinds)


def first_conditional_puts(plan: dict[str, list[str]]) -> Callable[[str, str, dict], str]:
    """A ``decide`` for :class:`FlakyProxy`: the conditional PUTs (``If-None-Match: *``) of a key named
    in ``plan`` (by its last path segment) take that key's faults in turn; every other request passes."""

    def decide(method: str, path: str, headers) -> str:
        key = path.split("?")[0].rsplit("/", 1)[-1]
        if method == "PUT" and headers.get("If-None-Match") == "*" and plan.get(key):
            return plan[key].pop(0)
        return OK

    return decide


class FlakyProxy:
    """A reverse proxy on 127.0.0.1 that forwards to ``upstream`` unless ``decide`` says otherwise.

    Use as a context manager: it serves from a thread and stops itself on exit.
    ``counts`` tallies the actions taken; ``log`` keeps (method, path, action).
    """

    def __init__(self, upstream: str, decide: Callable[[str, str, dict], str], slow: float = 0.2,
                 timeout: float = 1.5):
        parts = urlsplit(upstream)
        #: Seconds a SLOW answer waits (below the client's read timeout) and a TIMEOUT one
        #: (beyond it; the client has given up by then).
        self.slow, self.timeout = slow, timeout
        self.upstream = (parts.hostname, parts.port)
        self.decide = decide
        self.counts: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _action(self, method: str, path: str, headers) -> str:
        with self._lock:
            action = self.decide(method, path, headers)
            self.counts[action] += 1
            self.log.append((method, path, action))
            return action

    def __enter__(self) -> "FlakyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        """Closes the connection without a (complete) response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reset(self) -> None:
        """Aborts the connection with a TCP RST (SO_LINGER 0), as a load balancer or a crash does."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _error(self, status: int, code: str, message: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        proxy: FlakyProxy = self.server.proxy  # type: ignore[attr-defined]
        connection = http.client.HTTPConnection(*proxy.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            connection.close()

    def _proxy(self) -> None:
        proxy: FlakyProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._read_body()
        action = proxy._action(self.command, self.path, self.headers)
        if action == DROP:
            return self._drop()
        if action == RESET:
            return self._reset()
        if action == SLOWDOWN:
            return self._error(503, "SlowDown", "Please reduce your request rate.")
        if action == ERROR_500:
            return self._error(500, "InternalError", "We encountered an internal error. Please try again.")
        if action == NOT_IMPLEMENTED:
            return self._error(501, "NotImplemented", "A header you provided implies functionality that is "
                                                      "not implemented")
        status, headers, data = self._forward(body)
        if action == DROP_AFTER:  # the server did it; the client never hears
            return self._drop()
        if action == RESET_AFTER:
            return self._reset()
        if action in (SLOW, TIMEOUT):
            time.sleep(proxy.slow if action == SLOW else proxy.timeout)
        self.send_response(status)
        length = None
        for name, value in headers:
            if name.lower() == "content-length":
                length = value
            elif name.lower() not in _HOP_BY_HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        if self.command == "HEAD":
            if action in (TRUNCATE, CUT_RESET):  # no body to cut: the headers are cut instead
                self._headers_buffer = self._headers_buffer[:1]  # the status line only
                self.wfile.write(b"".join(self._headers_buffer))
                return self._drop() if action == TRUNCATE else self._reset()
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            return
        if action == FLIP and data:
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        if action in (TRUNCATE, CUT_RESET):  # promise more than comes, error answers and empty bodies included
            self.send_header("Content-Length", str(len(data) + 16))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if action == CUT_RESET:
                time.sleep(0.02)  # the client has the headers and part of the body when the RST comes
                return self._reset()
            return self._drop()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # a TIMEOUT's client is gone
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy
