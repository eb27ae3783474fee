"""The ``slurm:`` section of a spec, parsed strictly by the launcher.

``landscape_job`` keeps it as a raw mapping (the jobs never read it), like ``kubernetes:``;
the launcher alone turns it into batch scripts, so it alone validates it: every mistake is
one ``UserError`` naming the key (``slurm.gpus: expected an integer, got a string 'one'``),
raised before a script is rendered or a job submitted. Every key has a default, so a spec
without the section submits a working run from the launcher's own virtualenv.

    slurm:
      partition: gpu                # evaluate (and prepare when it runs the Hessian at θ*)
      cpu_partition: cpu            # prepare and merge (default: partition)
      account: proj42
      qos: normal
      constraint: a100
      gpus: 1                       # per evaluate task; 0 on a CPU partition
      gpu_request: gpus-per-task    # or gres: --gres=gpu[:type]:N for sites without --gpus-per-task
      gpu_type: a100                # optional GRES type
      cpus: 4                       # per evaluate task (--cpus-per-task)
      memory: 32G                   # per evaluate task (--mem)
      prepare_merge_cpus: 2
      prepare_merge_memory: 8G
      parallelism: 16               # array tasks at once (--array=0-N%16); default: every shard up to 256
      point_seconds: 60             # bound on one point: sizes the default time limits
      # evaluate_time: "04:00:00"   # or set a stage's limit (prepare_time, merge_time): minutes or [D-]HH:MM:SS
      requeue: true                 # --requeue: a preempted task starts again and resumes its shard
      signal_seconds: 300           # --signal=B:TERM@300: evaluate saves its finished points before the limit
      extra_sbatch: ["--reservation=landscape", "--mail-type=FAIL"]
      code: venv                    # venv | pyxis | apptainer
      venv: /shared/envs/landscape  # code: venv (default: the launcher's own environment)
      image: ghcr.io/landscape-dev/landscape:0.1.0   # pyxis/apptainer (a .sif path too, for apptainer)
      container_mounts: ["/scratch:/scratch"]
      setup: ["module load cuda/12.4"]   # shell lines each stage runs first
      log_dir: /shared/landscape-logs    # the jobs' logs for s3:// storage (file:// storage: the run's logs/)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from landscape_job.base.errors import UserError, shown
from landscape_job.base.schema import Section, key, object_schema

from launcher.kubernetes.section import DEFAULT_IMAGE

CODE_MODES = ("venv", "pyxis", "apptainer")
GPU_REQUESTS = ("gpus-per-task", "gres")
#: Array tasks at once when ``parallelism`` is unset (as ``kubernetes.parallelism``'s cap).
DEFAULT_PARALLELISM_CAP = 256
#: ``--signal``'s largest lead time (Slurm keeps it in 16 bits).
MAX_SIGNAL_SECONDS = 0xFFFF
#: Options the renderer sets itself; ``extra_sbatch`` may not set them again.
RESERVED_OPTIONS = ("--array", "--dependency", "--output", "--error", "--job-name", "--kill-on-invalid-dep",
                    "--parsable", "--wrap", "--open-mode", "-a", "-d", "-o", "-e", "-J")

_MEMORY = re.compile(r"^[1-9][0-9]*[KMGT]?$")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")


@dataclass(frozen=True)
class SlurmSpec:
    """The Slurm settings of a run; see the module docstring for the YAML form."""

    partition: str | None = key(None, description="partition of evaluate (default: the cluster's default)")
    cpu_partition: str | None = key(None, description="partition of prepare and merge (default: partition)")
    account: str | None = key(None)
    qos: str | None = key(None)
    constraint: str | None = key(None, description="--constraint of the evaluate tasks (node features)")
    gpus: int = key(1, kind=int, minimum=0, description="GPUs per evaluate task; 0 on a CPU partition")
    gpu_request: str = key("gpus-per-task", choices=GPU_REQUESTS,
                           description="--gpus-per-task, or --gres=gpu[:type]:N where the site has no GPU TRES")
    gpu_type: str | None = key(None, description="GRES type (a100, h100, ...)")
    cpus: int = key(4, kind=int, minimum=1, description="--cpus-per-task of an evaluate task")
    memory: str = key("32G", kind=(str, int), description="--mem of an evaluate task (MB, or K/M/G/T)")
    prepare_merge_cpus: int = key(2, kind=int, minimum=1)
    prepare_merge_memory: str = key("8G", kind=(str, int))
    parallelism: int | None = key(None, kind=int, minimum=1, description="array tasks at once (default: every "
                                                                         "shard, at most 256)")
    point_seconds: int = key(60, kind=int, minimum=1, description="upper bound on one point's evaluation (s); "
                                                                  "sizes the default time limits")
    prepare_time: str | None = key(None, kind=(str, int), description="--time of prepare: minutes or [D-]HH:MM:SS")
    evaluate_time: str | None = key(None, kind=(str, int), description="--time of each evaluate task")
    merge_time: str | None = key(None, kind=(str, int), description="--time of merge")
    requeue: bool = key(True, kind=bool, description="--requeue: a preempted task runs again and resumes")
    signal_seconds: int = key(300, kind=int, minimum=1, description="--signal=B:TERM@N: seconds before the time "
                                                                    "limit at which evaluate saves its points")
    extra_sbatch: tuple[str, ...] = key((), kind=(list, str), description="more #SBATCH options, one an item")
    code: str = key("venv", choices=CODE_MODES, description="how the jobs run the code: a virtualenv on the "
                                                            "shared filesystem, the image through pyxis, or Apptainer")
    venv: str | None = key(None, description="code: venv: the virtualenv's folder (default: the launcher's own)")
    image: str = key(DEFAULT_IMAGE, description="code: pyxis or apptainer: the image (apptainer: also a .sif path)")
    container_mounts: tuple[str, ...] = key((), kind=(list, str), description="SRC:DST[:ro] mounted in the "
                                                                              "container (pyxis or apptainer)")
    setup: tuple[str, ...] = key((), kind=(list, str), description="shell lines every stage runs first "
                                                                   "(module load ...)")
    log_dir: str | None = key(None, description="folder of the jobs' logs on the shared filesystem (default: "
                                                "the run's logs/ for file:// storage; required for s3://)")


def slurm_schema() -> dict[str, Any]:
    """The JSON Schema of the ``slurm:`` section, from the declarations above."""
    return object_schema(SlurmSpec, description="Slurm settings, read only by the launcher")


def parse_time(value: str | int, where: str) -> int:
    """A Slurm time (minutes, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in seconds."""
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"{where}: must be at least 1 minute, got {value}")
        return value * 60
    match = _TIME.match(value.strip())
    if not match:
        raise UserError(f"{where}: expected minutes or [D-]HH:MM:SS as sbatch --time takes it; got {shown(value)}")
    days, a, b, c = (int(g) if g is not None else None for g in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # minutes
        seconds = a * 60
    if seconds < 60:
        raise UserError(f"{where}: Slurm counts time limits in minutes; give at least 1 minute, got {shown(value)}")
    return seconds


def format_time(seconds: int) -> str:
    """Seconds as ``D-HH:MM:SS``, rounded up to the minute (Slurm's unit)."""
    minutes = -(-seconds // 60)
    days, rest = divmod(minutes, 1440)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _memory(s: Section, name: str) -> str:
    value = str(s.read(SlurmSpec, name))
    if not _MEMORY.match(value):
        raise UserError(f"{s.key(name)}: expected megabytes or a size with K, M, G or T as sbatch --mem takes it "
                        f"(32G, 8000); got {shown(value)}")
    return value


def _word(s: Section, name: str) -> str | None:
    value = s.read(SlurmSpec, name)
    if value is not None and (not _NAME.match(value) or len(value) > 200):
        raise UserError(f"{s.key(name)}: expected a Slurm name (letters, digits, '_', '.', '-'); got {shown(value)}")
    return value


def _lines(s: Section, name: str) -> tuple[str, ...]:
    raw = s.read(SlurmSpec, name)
    items = [raw] if isinstance(raw, str) else raw
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip() or any(c in item for c in "\n\r\0"):
            raise UserError(f"{s.key(name)}[{i}]: expected one line of text, got {shown(item)}")
    return tuple(item.strip() for item in items)


def _extra_sbatch(s: Section) -> tuple[str, ...]:
    options = _lines(s, "extra_sbatch")
    for i, option in enumerate(options):
        if not option.startswith("-"):
            raise UserError(f"slurm.extra_sbatch[{i}]: expected an sbatch option such as --mail-type=FAIL; "
                            f"got {shown(option)}")
        name = re.split(r"[=\s]", option, maxsplit=1)[0]
        if name in RESERVED_OPTIONS or any(name == r or (len(r) > 2 and name.startswith(r))
                                           for r in RESERVED_OPTIONS):
            raise UserError(f"slurm.extra_sbatch[{i}]: {name} is set by the launcher itself; remove it")
    return options


def _absolute(s: Section, name: str) -> str | None:
    value = s.read(SlurmSpec, name)
    if value is not None and (not value.startswith("/") or any(c.isspace() or c in "'\"$`\\" for c in value)):
        raise UserError(f"{s.key(name)}: expected an absolute path on the shared filesystem, without spaces or "
                        f"quotes; got {shown(value)}")
    return value


def parse_slurm(raw: object) -> SlurmSpec:
    """Validates the ``slurm:`` mapping of a spec (``None`` or ``{}``: all defaults)."""
    s = Section(raw, "slurm")
    partition, cpu_partition, account, qos = (_word(s, n) for n in ("partition", "cpu_partition", "account", "qos"))
    constraint = s.read(SlurmSpec, "constraint")
    if constraint is not None and (not constraint.strip() or any(c in constraint for c in "\n\r'\"`$\\ ")):
        raise UserError(f"slurm.constraint: expected node features such as a100 or 'a100&ib', without spaces "
                        f"or quotes; got {shown(constraint)}")
    gpus, gpu_request = s.read(SlurmSpec, "gpus"), s.read(SlurmSpec, "gpu_request")
    gpu_type = _word(s, "gpu_type")
    cpus, memory = s.read(SlurmSpec, "cpus"), _memory(s, "memory")
    pm_cpus, pm_memory = s.read(SlurmSpec, "prepare_merge_cpus"), _memory(s, "prepare_merge_memory")
    parallelism, point_seconds = s.read(SlurmSpec, "parallelism"), s.read(SlurmSpec, "point_seconds")
    times = {}
    for name in ("prepare_time", "evaluate_time", "merge_time"):
        value = s.read(SlurmSpec, name)
        times[name] = None if value is None else format_time(parse_time(value, s.key(name)))
    requeue, signal_seconds = s.read(SlurmSpec, "requeue"), s.read(SlurmSpec, "signal_seconds")
    if signal_seconds > MAX_SIGNAL_SECONDS:
        raise UserError(f"slurm.signal_seconds: at most {MAX_SIGNAL_SECONDS} (sbatch --signal), got {signal_seconds}")
    extra = _extra_sbatch(s)
    code, venv = s.read(SlurmSpec, "code"), _absolute(s, "venv")
    image = s.read(SlurmSpec, "image")
    if not image or any(c.isspace() or c in "'\"$`\\" for c in image):
        raise UserError(f"slurm.image: expected an image reference or a .sif path, got {shown(image)}")
    mounts = _lines(s, "container_mounts")
    for i, mount in enumerate(mounts):
        if not re.match(r"^/[^:\s,'\"$`]*(:/[^:\s,'\"$`]*(:(ro|rw))?)?$", mount):
            raise UserError(f"slurm.container_mounts[{i}]: expected /host/path[:/container/path[:ro]], got "
                            f"{shown(mount)}")
    setup, log_dir = _lines(s, "setup"), _absolute(s, "log_dir")
    s.finish()
    if venv is not None and code != "venv":
        raise UserError(f"slurm.venv: only with code: venv (code is {code}); remove one of the two")
    if gpu_type is not None and gpus == 0:
        raise UserError("slurm.gpu_type: the evaluate tasks request no GPU (slurm.gpus: 0); remove one of the two")
    return SlurmSpec(partition=partition, cpu_partition=cpu_partition, account=account, qos=qos,
                     constraint=constraint, gpus=gpus, gpu_request=gpu_request, gpu_type=gpu_type, cpus=cpus,
                     memory=memory, prepare_merge_cpus=pm_cpus, prepare_merge_memory=pm_memory,
                     parallelism=parallelism, point_seconds=point_seconds, requeue=requeue,
                     signal_seconds=signal_seconds, extra_sbatch=extra, code=code, venv=venv, image=image,
                     container_mounts=mounts, setup=setup, log_dir=log_dir, **times)


def with_defaults(slurm: SlurmSpec, venv: str) -> SlurmSpec:
    """The section with what only the submitting machine knows filled in: the virtualenv that runs
    the launcher stands for ``venv`` when the spec names none (the jobs see the same shared path)."""
    return replace(slurm, venv=slurm.venv or venv) if slurm.code == "venv" else slurm
