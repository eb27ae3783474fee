"""The fake API server itself: a test double whose own faults would make cluster tests flaky."""

from __future__ import annotations

import socket
import time

from fake_k8s import FakeCluster


def test_a_follow_client_that_goes_away_prints_no_traceback(capfd, tmp_path):
    """`launcher logs -f` ends by closing its connection; the server must take that quietly.

    Before: the handler thread's write to the closed socket raised ConnectionResetError
    (or BrokenPipeError), and socketserver printed its traceback to stderr, where the
    cluster tests read the launcher's one-line errors.
    """
    with FakeCluster(tmp_path) as fake:
        with fake.lock:
            fake.objects[("pods", "landscape", "p")] = {"metadata": {"name": "p", "namespace": "landscape"},
                                                       "status": {"phase": "Running"}}
        fake.append_log("p", "first line\n")
        host, port = fake.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(f"GET /api/v1/namespaces/landscape/pods/p/log?follow=true HTTP/1.1\r\n"
                           f"Host: {host}\r\nAuthorization: Bearer {fake.token}\r\n\r\n".encode())
            received = b""
            while b"first line" not in received:
                chunk = client.recv(4096)
                assert chunk, received
                received += chunk
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        for i in range(20):  # the server writes into the closed connection until it notices
            fake.append_log("p", f"more {i}\n" * 100)
            time.sleep(0.05)
        fake.end_pod("p", 0)
        time.sleep(0.2)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
