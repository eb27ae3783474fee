"""``launcher doctor --slurm``: can this login node run landscape on its Slurm cluster?

One line a check, each a typed ``Check`` (ok, warn or fail, and what to do): the
controller answers; the partitions, their nodes, GPUs per node (GRES) and time limits;
the spec's partitions exist and its GPU partition has GPUs; the largest array
(``MaxArraySize``) against the spec's shards; the container runtime the spec's
``slurm.code`` needs (pyxis adds ``--container-image`` to ``srun``; ``apptainer`` or
``singularity`` on PATH; a virtualenv's ``landscape-job``); and the shared path (a
file:// storage, ``slurm.log_dir``) writable. The checks read; they submit nothing.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from landscape_job.base.errors import StageError, UserError

from launcher.slurm.scheduler import Slurm
from launcher.slurm.section import SlurmSpec

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str

    def line(self) -> str:
        return f"[{self.result:>4}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class Partition:
    """One ``sinfo`` row: a partition's state, nodes, GPUs per node (from its GRES) and time limit."""

    name: str
    up: bool
    nodes: int
    gpus_per_node: int
    time_limit: str
    default: bool


def gpus_in(gres: str) -> int:
    """GPUs per node in a GRES string (``gpu:a100:4(S:0-1),nic:1`` -> 4; ``(null)`` -> 0)."""
    total = 0
    for part in gres.split(","):
        match = re.match(r"^gpu(?::[^:(]+)?:(\d+)", part.strip())
        if match:
            total += int(match.group(1))
    return total


def partitions(slurm: Slurm) -> list[Partition]:
    rows = slurm.command(["sinfo", "-h", "-o", "%P|%a|%D|%G|%l"]).splitlines()
    found: dict[str, Partition] = {}
    for row in rows:
        name, state, nodes, gres, limit = (row.split("|") + [""] * 5)[:5]
        clean = name.rstrip("*")
        previous = found.get(clean)
        gpus = max(gpus_in(gres), previous.gpus_per_node if previous else 0)
        count = int(nodes or 0) + (previous.nodes if previous else 0)
        found[clean] = Partition(clean, state == "up", count, gpus, limit, name.endswith("*"))
    return list(found.values())


def _runtime(settings: SlurmSpec, slurm: Slurm) -> Check:
    if settings.code == "venv":
        path = Path(settings.venv or "", "bin", "landscape-job")
        return Check("code", OK if path.exists() else FAIL,
                     f"virtualenv {settings.venv}: landscape-job found" if path.exists() else
                     f"{path} not found: give slurm.venv, a virtualenv on the shared filesystem with landscape "
                     f"installed")
    if settings.code == "apptainer":
        found = shutil.which("apptainer") or shutil.which("singularity")
        return Check("code", OK if found else FAIL, f"apptainer found: {found}" if found else
                     "neither apptainer nor singularity on PATH (module load apptainer?); or use code: pyxis or venv")
    try:
        help_text = slurm.command(["srun", "--help"])
    except (UserError, StageError) as err:
        return Check("code", FAIL, f"srun --help failed: {err}")
    if "--container-image" in help_text:
        return Check("code", OK, "pyxis: srun takes --container-image")
    return Check("code", FAIL, "srun has no --container-image: the pyxis plugin is not installed here; "
                               "use code: apptainer or venv")


def _writable(name: str, folder: str) -> Check:
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".landscape-doctor-"):
            pass
    except OSError as err:
        return Check(name, FAIL, f"{folder} is not writable here: {err.strerror}")
    return Check(name, OK, f"{folder} is writable here (the nodes must see the same path)")


def run_checks(settings: SlurmSpec, shards: int | None, shared: list[tuple[str, str]],
               slurm: Slurm | None = None) -> list[Check]:
    """Every check, in order; a controller that does not answer ends them (nothing else can be asked)."""
    slurm = slurm or Slurm()
    checks: list[Check] = []
    try:
        found = partitions(slurm)
    except (UserError, StageError) as err:
        return [Check("controller", FAIL, str(err))]
    checks.append(Check("controller", OK, f"{len(found)} partitions"))
    for part in found:
        checks.append(Check(f"partition {part.name}", OK if part.up else WARN,
                            f"{'up' if part.up else 'not up'}, {part.nodes} nodes, {part.gpus_per_node} GPUs a node, "
                            f"time limit {part.time_limit}{' (default)' if part.default else ''}"))
    names = {p.name: p for p in found}
    gpu = names.get(settings.partition) if settings.partition else next((p for p in found if p.default), None)
    for key, wanted in (("slurm.partition", settings.partition), ("slurm.cpu_partition", settings.cpu_partition)):
        if wanted and wanted not in names:
            checks.append(Check(key, FAIL, f"no partition {wanted} (sinfo lists {', '.join(sorted(names))})"))
    if settings.gpus and gpu is not None:
        enough = gpu.gpus_per_node >= settings.gpus
        checks.append(Check("GPUs", OK if enough else FAIL,
                            f"partition {gpu.name} has {gpu.gpus_per_node} GPUs a node, a task asks {settings.gpus}"
                            + ("" if enough else "; set slurm.partition to a GPU partition, or slurm.gpus: 0")))
    if shards is not None:
        config = slurm.command(["scontrol", "show", "config"])
        match = re.search(r"MaxArraySize\s*=\s*(\d+)", config)
        largest = int(match.group(1)) - 1 if match else None
        if largest is not None:
            checks.append(Check("array size", OK if shards - 1 <= largest else FAIL,
                                f"{shards} shards, array indexes up to {largest}"
                                + ("" if shards - 1 <= largest else "; lower compute.shards")))
    checks.append(_runtime(settings, slurm))
    checks += [_writable(name, folder) for name, folder in shared]
    return checks



def shared_paths(storage_path: str | None, log_dir: str | None) -> list[tuple[str, str]]:
    """The folders the jobs write that must be shared: a file:// storage, the log folder."""
    return [(name, path) for name, path in (("storage", storage_path), ("slurm.log_dir", log_dir)) if path]
