"""Pods of the fake cluster forked from a preloaded interpreter, as a fork server starts its workers.

A pod used to be ``python -m landscape_job.cli ...``: a fresh interpreter that spends ~2 s of CPU
importing torch before its stage begins, about a tenth of the suite's CPU over the fake cluster's
pods. A real container starts afresh too, but its start-up is not what these tests test; what the
pod does is (its argv, environment, working directory, output, exit code, signals), and that is
kept:

* The server (this file run as a script: one per pytest process, started on first use) imports
  torch and ``landscape_job.cli`` once. It is single-threaded, so forking it is safe, and it never
  runs a torch operation, so no OpenMP pool exists to be lost in the fork.
* Asked over its socket (a request: argv, environment, working directory, and the descriptor for
  the pod's stdout and stderr), it forks. The child takes that environment, folder and descriptor,
  runs ``landscape_job.cli`` as ``python -m`` does (``__main__``, ``sys.argv``, ``sys.path[0]``),
  and exits as an interpreter does: non-daemon threads joined, atexit handlers run, streams flushed.
* The server answers the child's pid, reaps its children, and sends each one's wait status.
  :class:`PreloadedProcess` is what the fake keeps of a pod: the parts of ``subprocess.Popen`` it
  uses (``pid``, ``stdout``, ``poll``, ``wait``, ``terminate``, ``kill``).

Not modelled: what an interpreter reads from its environment before running any code (``PYTHON*``
variables; ``OMP_*``, read as torch loads). The server starts with the pods' own settings of those
(``PYTHONUNBUFFERED``, ``PYTHONDONTWRITEBYTECODE``, no ``OMP_*``), and a pod whose environment sets
one otherwise is refused rather than run differently. Matplotlib is not preloaded: it reads
``MPLCONFIGDIR`` and ``MPLBACKEND`` from the pod's environment when merge first draws.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

#: What every pod's environment says of the settings an interpreter reads at start-up (the rendered
#: Job's env): the server starts with exactly these.
STARTUP_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
_STARTUP_PREFIXES = ("PYTHON", "OMP_", "MKL_", "KMP_")
_PASSED_THROUGH = {"PYTHONPATH"}  # the server's own sys.path comes from it; the tests' is the pods'
_MESSAGE = 1 << 20


class PreloadedProcess:
    """One pod's process, as the fake sees it: ``subprocess.Popen``'s ``pid``, ``stdout``, ``returncode``,
    ``poll``, ``wait`` (``subprocess.TimeoutExpired``), ``send_signal``, ``terminate`` and ``kill``."""

    def __init__(self, args: list[str], pid: int, stdout: io.TextIOBase):
        self.args, self.pid, self.stdout = args, pid, stdout
        self.returncode: int | None = None
        self._ended = threading.Event()

    def _exited(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)  # a signal's death: minus its number, as Popen's
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # until it is reaped its pid cannot be another process's
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Client:
    """This pytest process's connection to its server: one request at a time, replies read by one thread."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_STARTUP_PREFIXES) or k in _PASSED_THROUGH}
        self.server = subprocess.Popen([sys.executable, __file__, str(theirs.fileno())], env={**env, **STARTUP_ENV},
                                       pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.socket = ours
        self.lock = threading.Lock()  # one spawn at a time: its pid is the next pid reply
        self.pids: list[int] = []
        self.pid_ready = threading.Condition()
        self.processes: dict[int, PreloadedProcess] = {}
        self.early: dict[int, int] = {}  # statuses of children that ended before their spawn returned
        threading.Thread(target=self._read, daemon=True, name="preloaded-replies").start()

    def _read(self) -> None:
        while True:
            try:
                data = self.socket.recv(_MESSAGE)
            except OSError:
                data = b""
            if not data:  # the server is gone: no pod will be reported again
                return
            reply = json.loads(data)
            with self.pid_ready:
                if "pid" in reply:
                    self.pids.append(reply["pid"])
                    self.pid_ready.notify_all()
                    continue
                process = self.processes.pop(reply["exited"], None)
                if process is None:
                    self.early[reply["exited"]] = reply["status"]
            if process is not None:
                process._exited(reply["status"])

    def spawn(self, args: list[str], env: dict[str, str], cwd: str | None) -> PreloadedProcess:
        startup = {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES) and k not in _PASSED_THROUGH}
        if startup != STARTUP_ENV:
            raise AssertionError(f"a pod sets interpreter start-up variables {startup}, the preloaded server "
                                 f"{STARTUP_ENV}: run it with subprocess instead")
        read, write = os.pipe()
        request = json.dumps({"args": args, "env": env, "cwd": cwd}).encode()
        try:
            with self.lock:
                socket.send_fds(self.socket, [request], [write])
                with self.pid_ready:
                    while not self.pids:
                        if not self.pid_ready.wait(timeout=60):
                            raise RuntimeError("the preloaded interpreter did not answer in 60 s")
                    pid = self.pids.pop(0)
        finally:
            os.close(write)  # the child holds it now: EOF when the pod (and anything it started) has exited
        process = PreloadedProcess(args, pid, open(read, encoding="utf-8", errors="replace"))
        with self.pid_ready:
            status = self.early.pop(pid, None)
            if status is None:
                self.processes[pid] = process
        if status is not None:
            process._exited(status)
        return process

    def close(self) -> None:
        self.socket.close()  # the server ends on EOF
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()


_client: _Client | None = None
_client_lock = threading.Lock()


def spawn(args: list[str], env: dict[str, str], cwd: str | None = None) -> PreloadedProcess:
    """``python -m landscape_job.cli *args`` with ``env`` in ``cwd``, forked from this process's server."""
    global _client
    with _client_lock:
        if _client is None or _client.server.poll() is not None:
            _client = _Client()
            atexit.register(_client.close)
        client = _client
    return client.spawn(args, env, cwd)


# --- the server ----------------------------------------------------------------------------------


def _child(request: dict[str, Any], out: int) -> None:
    """In the forked child: become the pod's ``python -m landscape_job.cli`` and never return."""
    code: Any = 0
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        cwd = request["cwd"] or os.getcwd()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["-m", *request["args"]]
        sys.path.insert(0, cwd)  # python -m puts the working folder first
        import runpy

        sys.modules.pop("landscape_job.cli", None)  # as in a fresh interpreter: imported by -m as __main__ only
        runpy.run_module("landscape_job.cli", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    except BaseException:  # noqa: BLE001 - what the interpreter would print, and its exit code
        import traceback

        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:  # the interpreter's own exit: threads, atexit, streams
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _serve(fd: int) -> None:
    import torch  # noqa: F401 - what every pod would import first: the point of this server
    import landscape_job.cli  # noqa: F401
    import landscape_job.stages  # noqa: F401

    assert "matplotlib" not in sys.modules, "matplotlib reads the pod's environment as it loads: not preloaded"
    server = socket.socket(fileno=fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes the wakeup byte
    while True:
        ready, _, _ = select.select([server, wake_read], [], [])
        if wake_read in ready:
            os.read(wake_read, 4096)
        while True:  # reap every ended child
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            server.send(json.dumps({"exited": pid, "status": status}).encode())
        if server in ready:
            data, fds, _, _ = socket.recv_fds(server, _MESSAGE, 1)
            if not data:
                return  # the pytest process closed its end: this server's work is over
            pid = os.fork()
            if pid == 0:
                server.close()
                os.close(wake_read)
                os.close(wake_write)
                _child(json.loads(data), fds[0])
            os.close(fds[0])
            server.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    sys.path.pop(0)  # this folder: a pod imports landscape_job from the installed project, as python -m does
    _serve(int(sys.argv[1]))
