"""A Storage that counts its requests, the wrapped store doing the work: how many requests one
progress poll makes (tests/kubernetes/test_cluster_readiness.py, benchmarks/poll_requests.py)."""

from __future__ import annotations

REQUESTS = ("put", "put_if_absent", "get", "exists", "list", "delete")


class Counting:
    """``calls`` names each request made through it, in order."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name in REQUESTS:
            def counted(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return counted
        return attr
