"""A real one-node Slurm cluster for the tests: Debian's ``munged``, ``slurmctld`` and ``slurmd``.

Nothing is installed here (``make slurm`` does that, as root, when they are missing); this
module only starts the daemons with a generated configuration in a temporary folder and
stops them afterwards. The node has two partitions: ``cpu`` (the default) and ``gpu``,
whose ``gpu`` GRES are two plain files standing in for device nodes, so ``--gpus-per-task``
and ``--gres`` are scheduled for real (the job gets ``CUDA_VISIBLE_DEVICES``), while the
code runs on the CPU.

The cluster runs jobs as the user who started it (root on CI), with the project's
virtualenv: the ``venv`` code mode of the ``slurm:`` section. Client commands find it
through ``SLURM_CONF`` (``SlurmCluster.env``), which the fixture sets for the whole session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The daemons and clients a test cluster needs; a missing one skips (or fails, in CI) the Slurm tests.
REQUIRED = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
#: Node size declared to Slurm (``config_overrides``: more than the machine's 2 cores, so a few
#: 1-CPU tasks of different runs fit at once).
NODE_CPUS = 8
NODE_MEMORY_MB = 8000
GPUS = 2


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED if shutil.which(tool) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, node: str, user: str, ports: tuple[int, int]) -> str:
    """The cluster's ``slurm.conf``: one node, a ``cpu`` and a ``gpu`` partition, no accounting, no cgroups."""
    return f"""\
ClusterName=landscape-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
MailProg=/bin/true
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
GresTypes=gpu
MinJobAge=600
KillWait=5
InactiveLimit=0
SchedulerParameters=batch_sched_delay=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:{GPUS} State=UNKNOWN
PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={node} MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """A running test cluster: its folder, config file and the environment its clients need."""

    root: Path
    node: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *command: str, check: bool = True) -> str:
        result = subprocess.run(command, env={**os.environ, **self.env}, capture_output=True, text=True,
                                timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()}")
        return result.stdout

    def logs(self) -> str:
        """The daemons' logs, for a failing test's message."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def start(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.processes.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={munge}/munge.socket", f"--key-file={key}",
             f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed", f"--log-file={munge}/munged.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _until(lambda: (munge / "munge.socket").exists(), 10, "munged's socket", self)
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        devices = self.root / "dev"
        devices.mkdir()
        for i in range(GPUS):  # stand-ins for /dev/nvidia<i>: Slurm schedules them and sets CUDA_VISIBLE_DEVICES
            (devices / f"gpu{i}").touch()
        user = os.environ.get("USER") or "root"
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(slurm_conf(self.root, self.node, user, (_free_port(), _free_port())))
        (self.root / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File={devices}/gpu[0-{GPUS - 1}]\n")
        env = {**os.environ, **self.env}
        for daemon in (["slurmctld", "-D", "-i"], ["slurmd", "-D", "-N", self.node]):
            self.processes.append(subprocess.Popen([*daemon, "-f", str(self.conf)], env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                   start_new_session=True))
        _until(self._node_ready, 30, "the node to be idle", self)

    def _node_ready(self) -> bool:
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        except subprocess.TimeoutExpired:
            return False
        states = out.split()
        return bool(states) and all(s in ("idle", "mix", "alloc") for s in states)

    def stop(self) -> None:
        """Every job cancelled, then the daemons stopped (SIGTERM, then SIGKILL), newest first."""
        try:
            self.run("scancel", "--user", str(os.getuid()), check=False)
        except (subprocess.TimeoutExpired, OSError):
            pass
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _until(ready, seconds: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        for process in cluster.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited ({process.returncode}) while waiting for {what}\n"
                                   f"{cluster.logs()}")
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}\n{cluster.logs()}")


def start_cluster(root: Path) -> SlurmCluster:
    """Starts munged, slurmctld and slurmd in ``root``; stops what started if the cluster does not come up."""
    cluster = SlurmCluster(root=root, node=socket.gethostname().split(".")[0])
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
