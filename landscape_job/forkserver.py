"""Stage processes forked from an interpreter that has imported torch once: a local run's workers.

Importing torch costs ~2 s of CPU (the CUDA wheel; most of it torch's own operator registrations)
before a stage does any work, and a local run starts a process for prepare, for every shard and
again for each on a resume. So a local run starts one server that imports torch and the stages,
and forks each stage process from it, as multiprocessing's forkserver starts its workers:

* The server (``python -m landscape_job.forkserver``) is single-threaded and runs no torch
  operation, so a fork copies no thread and no OpenMP pool. It starts in a session of its own (a
  terminal's Ctrl-C is the launcher's to handle) with the environment it is given: the launcher's
  with its pid (``launcher.local.runner.stage_env``), which ``/proc/<pid>/environ`` then shows for
  each of its stages too (a stage's own is in ``os.environ``).
* A request is a stage's argv, environment, folder and output descriptor. The child takes them,
  a session of its own when asked (the runner stops a stage by its process group), the thread
  counts of ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (which torch reads when it loads: here it
  loaded before them), runs ``landscape_job.cli`` as ``python -m`` does, and exits as an
  interpreter does: non-daemon threads joined, atexit handlers run, streams flushed.
* The server answers each child's pid, reaps its children and sends each wait status. It ends
  when the socket closes: the launcher's end, or the launcher's death (its stages then stop
  themselves: ``base.termination``'s parent watch).

A process keeps its servers (:func:`shared`, one per set of start-up settings) for all its runs: a
launcher runs one, its check of the inputs first (``launcher.local.precheck``); the Python API may
run many in one notebook.

:class:`StageProcess` is what a caller keeps of a stage: the parts of ``subprocess.Popen`` the
local runner uses. What an interpreter reads from its environment before running any code
(``PYTHON*``, the other ``OMP_*``) is the server's, so :meth:`StageServer.start` starts a
stage whose environment differs there from the server's afresh (``subprocess.Popen``), as it
does where fork is not safe with torch (not Linux) or the server is gone.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Mapping

#: Whether stages are forked here: on Linux (elsewhere fork and torch do not mix safely, or there is no fork).
FORKS = sys.platform == "linux"
#: Set where the thread counts are the child's to apply (torch.set_num_threads) rather than torch's to read.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_STARTUP = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "LD_")
_MESSAGE = 1 << 20


#: The pod entrypoint's module: what a stage runs, forked or afresh.
ENTRYPOINT = "landscape_job.cli"


def command(args: list[str]) -> list[str]:
    """The stage's command line afresh: ``python -m landscape_job.cli *args``."""
    return [sys.executable, "-m", ENTRYPOINT, *args]


def _startup_settings(env: Mapping[str, str]) -> dict[str, str]:
    """What an interpreter (and torch's OpenMP) reads as it starts, less the thread counts a child applies."""
    return {k: v for k, v in env.items() if k.startswith(_STARTUP) and k not in THREAD_VARIABLES}


class StageProcess:
    """A forked stage, as ``subprocess.Popen``: ``pid``, ``returncode`` (minus the signal's number when one
    killed it), ``poll``, ``wait`` (``subprocess.TimeoutExpired``), ``send_signal``, ``terminate``, ``kill``."""

    def __init__(self, args: list[str], pid: int):
        self.args, self.pid = args, pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def _exited(self, returncode: int) -> None:
        self.returncode = returncode
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not yet reaped: its pid is still its own
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class StageServer:
    """One preloaded interpreter and the stages forked from it; ``close`` (or the end of a ``with``) ends it."""

    def __init__(self, env: Mapping[str, str]):
        self.env = {k: v for k, v in env.items() if k not in THREAD_VARIABLES}
        self._startup = _startup_settings(self.env)  # a stage whose own differ starts afresh
        self.usable = FORKS
        self._lock = threading.Lock()  # one request at a time: its pid is the next pid reply
        self._replies = threading.Condition()
        self._pids: list[int] = []
        self._running: dict[int, StageProcess] = {}
        self._early: dict[int, int] = {}  # exits read before their start returned
        self._gone = False
        if not self.usable:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Its own output goes nowhere: a server that cannot start (torch failing to import) leaves each stage
        # to start afresh, and to say why in its own log.
        self.process = subprocess.Popen([sys.executable, "-m", "landscape_job.forkserver",
                                         str(theirs.fileno())], env=self.env, pass_fds=[theirs.fileno()],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.socket = ours
        threading.Thread(target=self._read, daemon=True, name="forkserver-replies").start()

    @property
    def serving(self) -> bool:
        """Whether stages can be forked from it: it started (forking is possible here), is not closed, and lives."""
        return self.usable and not self._gone

    def __enter__(self) -> StageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        while True:
            try:
                data = self.socket.recv(_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            reply = json.loads(data)
            with self._replies:
                if "pid" in reply:
                    self._pids.append(reply["pid"])
                    self._replies.notify_all()
                    continue
                process = self._running.pop(reply["exited"], None)
                if process is None:
                    self._early[reply["exited"]] = reply["code"]
            if process is not None:
                process._exited(reply["code"])
        with self._replies:  # the server is gone: its children's statuses with it
            self._gone = True
            self._replies.notify_all()
            orphans, self._running = list(self._running.values()), {}
        for process in orphans:
            _wait_gone(process)

    def start(self, args: list[str], env: Mapping[str, str], stdout: int, cwd: str | None = None,
              new_session: bool = False) -> StageProcess | subprocess.Popen:
        """``python -m landscape_job.cli *args`` with ``env``, its stdout and stderr on the descriptor ``stdout``."""
        afresh = lambda: subprocess.Popen(command(args), env=dict(env), cwd=cwd, stdout=stdout,  # noqa: E731
                                          stderr=subprocess.STDOUT, start_new_session=new_session)
        if not self.serving or _startup_settings(env) != self._startup:
            return afresh()
        request = json.dumps({"args": args, "env": dict(env), "cwd": cwd, "session": new_session}).encode()
        with self._lock:
            try:
                socket.send_fds(self.socket, [request], [stdout])
            except OSError:  # the server is gone (its reader has not seen it yet)
                return afresh()
            with self._replies:
                while not self._pids and not self._gone:
                    self._replies.wait(timeout=1.0)
                if not self._pids:  # it died before it forked this one
                    return afresh()
                pid = self._pids.pop(0)
                process = StageProcess(list(args), pid)
                code = self._early.pop(pid, None)
                if code is None:
                    self._running[pid] = process
        if code is not None:
            process._exited(code)
        return process

    def close(self) -> None:
        if not self.usable:
            return
        self.usable = False
        try:  # EOF for the server (close alone would wait for the reader's blocked recv); stages still running run on
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.socket.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_shared: dict[tuple[tuple[str, str], ...], StageServer] = {}
_shared_lock = threading.Lock()


def shared(env: Mapping[str, str]) -> StageServer:
    """This process's server for stages whose start-up settings are ``env``'s: started on first use with
    ``env``, kept for every later run of the process, ended at its exit.

    A launcher runs one run; the Python API may run many in one process (a notebook), and each would
    otherwise start a server of its own, ~2 s of CPU and of wall time before its first stage. Each stage
    takes its own environment from its request, so a server serves any run whose start-up settings match.
    One that has died is replaced."""
    key = tuple(sorted(_startup_settings(env).items()))
    with _shared_lock:
        server = _shared.get(key)
        if server is None or not server.serving:
            server = _shared[key] = StageServer(env)
        return server


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.close()


def _wait_gone(process: StageProcess) -> None:
    """A stage whose server died: its status is lost, so it counts as failed once its pid is gone."""
    while True:
        try:
            os.kill(process.pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        time.sleep(0.2)
    process._exited(1)


# --- the server ----------------------------------------------------------------------------------


def _child(request: dict[str, Any], out: int, ready: int) -> None:
    """In the forked child: become ``python -m landscape_job.cli <args>``; never returns."""
    code: Any = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # what the server changed: its child watch
        signal.set_wakeup_fd(-1)
        if request["session"]:
            os.setsid()
        os.write(ready, b".")  # its session is its own before its pid is answered (a stop goes to the group)
        os.close(ready)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        if request["cwd"]:
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        threads = os.environ.get("OMP_NUM_THREADS", os.environ.get("MKL_NUM_THREADS"))
        if threads and threads.isdigit() and int(threads) > 0:
            import torch

            torch.set_num_threads(int(threads))
        sys.argv = ["-m", *request["args"]]
        sys.path[0] = os.getcwd()  # python -m's first entry: the folder it started in (the server's, until here)
        sys.modules.pop(ENTRYPOINT, None)  # -m runs it as __main__ only
        import runpy

        runpy.run_module(ENTRYPOINT, run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    except BaseException:  # noqa: BLE001 - the interpreter would print it and exit 1
        import traceback

        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:  # the interpreter's own exit
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def serve(fd: int) -> None:
    """The server's loop: a request forks a stage; an ended child is reaped and reported."""
    import torch  # the point of this process
    import landscape_job.cli  # noqa: F401
    import landscape_job.stages  # noqa: F401

    if torch.cuda.is_initialized():  # CUDA does not survive a fork: no stage may be forked from here
        sys.exit("forkserver: CUDA was initialized while importing the stages")  # each stage then starts afresh

    server = socket.socket(fileno=fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes the wake-up byte
    while True:
        ready, _, _ = select.select([server, wake_read], [], [])
        if wake_read in ready:
            os.read(wake_read, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            server.send(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}).encode())
        if server in ready:
            data, fds, _, _ = socket.recv_fds(server, _MESSAGE, 1)
            if not data:
                return  # the launcher closed its end, or died
            ready_read, ready_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                server.close()
                for fd in (wake_read, wake_write, ready_read):
                    os.close(fd)
                _child(json.loads(data), fds[0], ready_write)
            os.close(fds[0])
            os.close(ready_write)
            os.read(ready_read, 1)  # as subprocess.Popen returns once its child is set up (or gone)
            os.close(ready_read)
            server.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]))
