"""A run's three Slurm batch scripts, rendered from a typed spec: no I/O, no scheduler.

``render_scripts`` returns, in submission order:

1. ``prepare``: one task on the CPU partition (the GPU one when it runs the Hessian at θ*).
   Its script carries the normalised spec (a here-document it writes beside its log), so
   the three scripts submitted by hand need nothing else (``landscape-job prepare`` seeds
   ``spec.yaml`` from it when the run's storage has none).
2. ``evaluate``: an array job, ``--array=0-(N-1)%parallelism``, one shard a task, which
   ``landscape-job evaluate`` reads from ``SLURM_ARRAY_TASK_ID``; one GPU a task (through
   ``--gpus-per-task`` or ``--gres``), its CPUs and memory from the spec. ``--requeue``
   and ``--signal=B:TERM@N``: the batch shell ``exec``\\ s into the stage, so the stage itself
   gets the SIGTERM, saves its finished points (``landscape_job.base.termination``) and a
   requeued task resumes from them.
3. ``merge``: one task on the CPU partition.

The dependencies are not in the scripts but on the ``sbatch`` command line
(``--dependency=afterok:<prepare>``, then ``afterok:<evaluate>``: job ids exist only once
submitted); every script sets ``--kill-on-invalid-dep=yes``, so a failed stage cancels the
stages after it at once instead of leaving them pending forever. ``sbatch_lines`` are the
commands a user types to submit the scripts by hand.

How the code runs (``slurm.code``): a virtualenv on the shared filesystem (``exec
<venv>/bin/landscape-job``), the project's image through pyxis/enroot (``srun
--container-image``), or Apptainer (``apptainer exec --nv``); a file:// run folder and the
log folder are mounted into the containers. Every job finds the run as a pod does:
``LANDSCAPE_RUN`` and ``LANDSCAPE_STORAGE_OPTIONS``; S3 credentials come from the
submitting shell's environment (sbatch exports it), never from a script.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

import landscape_job
from landscape_job.base.errors import UserError
from landscape_job.runtime.gpu import REQUIRE_GPU_ENV
from landscape_job.spec.sections import Spec
from landscape_job.storage.location import FILE

from launcher.slurm.limits import stage_times
from launcher.slurm.section import DEFAULT_PARALLELISM_CAP, SlurmSpec

STAGES = ("prepare", "evaluate", "merge")
#: ``--comment`` of every job of a run: how ``launcher list --slurm`` and ``cancel`` find them.
COMMENT_PREFIX = "landscape-run="
#: The here-document delimiter of the embedded spec (a YAML dump never has it at a line's start).
SPEC_END = "LANDSCAPE_SPEC_END"


@dataclass(frozen=True)
class BatchScript:
    """One stage's ``sbatch`` script and where its log goes (``%a``: the array task)."""

    stage: str
    text: str
    log: str

    @property
    def file_name(self) -> str:
        return f"{self.stage}.sbatch"


@dataclass(frozen=True)
class SlurmRun:
    """The scripts of a run, in submission order, and the folder of their logs."""

    run_id: str
    scripts: tuple[BatchScript, ...]
    log_dir: str

    def script(self, stage: str) -> BatchScript:
        return next(s for s in self.scripts if s.stage == stage)


def evaluate_parallelism(slurm: SlurmSpec, shards: int) -> int:
    """Array tasks at once: the spec's, else every shard up to ``DEFAULT_PARALLELISM_CAP``."""
    return min(slurm.parallelism or DEFAULT_PARALLELISM_CAP, shards)


def log_dir(spec: Spec, run_id: str, slurm: SlurmSpec) -> str:
    """The run's own ``logs/`` for file:// storage (``launcher logs`` reads it as a local run's),
    else ``slurm.log_dir/<run>``: Slurm writes logs to a filesystem, never to S3."""
    if slurm.log_dir:
        return str(PurePosixPath(slurm.log_dir) / run_id)
    if spec.storage.scheme == FILE:
        return str(spec.storage.join(run_id).path / "logs")
    raise UserError(f"slurm.log_dir: required with {spec.storage.scheme}:// storage (Slurm writes the jobs' logs "
                    f"to a shared folder); set it to a folder every node can write")


def _gpu_options(slurm: SlurmSpec) -> list[str]:
    if slurm.gpus == 0:
        return []
    typed = f"{slurm.gpu_type}:" if slurm.gpu_type else ""
    if slurm.gpu_request == "gres":
        return [f"--gres=gpu:{typed}{slurm.gpus}"]
    return [f"--gpus-per-task={typed}{slurm.gpus}"]


def _mounts(spec: Spec, run_id: str, slurm: SlurmSpec, logs: str) -> list[str]:
    """What a container must see: the user's mounts, the run's folder (file://) and the log folder."""
    mounts = list(slurm.container_mounts)
    if spec.storage.scheme == FILE:
        mounts.append(str(spec.storage.path))
    if not any(logs == m.split(":")[0] or logs.startswith(m.split(":")[0].rstrip("/") + "/") for m in mounts):
        mounts.append(logs)
    return mounts


def pyxis_image(image: str) -> str:
    """An image reference as enroot names it: ``registry#name:tag`` (a path or a bare name stays)."""
    if image.startswith(("/", "./")):
        return image
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


def apptainer_image(image: str) -> str:
    """A ``.sif`` path or URI as given, else the registry image as ``docker://``."""
    return image if image.startswith("/") or "://" in image or image.endswith(".sif") else f"docker://{image}"


def _command(spec: Spec, run_id: str, slurm: SlurmSpec, stage: str, logs: str, gpus: bool, cpus: int) -> list[str]:
    """The stage's command, ``exec``\\ ed by the batch shell (so ``--signal=B:TERM`` reaches it). ``srun``
    is given the task's CPUs again: since 22.05 it no longer takes them from ``SLURM_CPUS_PER_TASK``."""
    if slurm.code == "venv":
        if not slurm.venv:
            raise UserError("slurm.venv: required with code: venv (the virtualenv every node sees)")
        return [f"{slurm.venv}/bin/landscape-job", stage]
    mounts = _mounts(spec, run_id, slurm, logs)
    if slurm.code == "pyxis":
        words = ["srun", "--ntasks=1", f"--cpus-per-task={cpus}", f"--container-image={pyxis_image(slurm.image)}"]
        words += [f"--container-mounts={','.join(mounts)}"] if mounts else []
        return [*words, "landscape-job", stage]
    words = ["apptainer", "exec", *(["--nv"] if gpus else [])]
    words += [f"--bind={','.join(mounts)}"] if mounts else []
    return [*words, apptainer_image(slurm.image), "landscape-job", stage]


def _script(spec: Spec, run_id: str, slurm: SlurmSpec, stage: str, logs: str, time: str) -> BatchScript:
    shards = spec.compute.shards
    heavy = stage == "evaluate" or (stage == "prepare" and spec.uses_hessian and spec.series is None)
    log = f"{logs}/{stage}-%a.log" if stage == "evaluate" else f"{logs}/{stage}.log"
    partition = slurm.partition if heavy else (slurm.cpu_partition or slurm.partition)
    options = [f"--job-name={run_id}-{stage}", f"--comment={COMMENT_PREFIX}{run_id}"]
    if stage == "evaluate":
        options.append(f"--array=0-{shards - 1}%{evaluate_parallelism(slurm, shards)}")
    options += [f"--partition={partition}"] if partition else []
    options += [f"--account={slurm.account}"] if slurm.account else []
    options += [f"--qos={slurm.qos}"] if slurm.qos else []
    options += [f"--constraint={slurm.constraint}"] if slurm.constraint and heavy else []
    cpus, memory = (slurm.cpus, slurm.memory) if heavy else (slurm.prepare_merge_cpus, slurm.prepare_merge_memory)
    options += ["--nodes=1", "--ntasks=1", f"--cpus-per-task={cpus}", f"--mem={memory}"]
    options += _gpu_options(slurm) if heavy else []
    options += [f"--time={time}", "--kill-on-invalid-dep=yes", f"--output={log}", "--open-mode=append"]
    if stage == "evaluate":
        options += ["--requeue" if slurm.requeue else "--no-requeue", f"--signal=B:TERM@{slurm.signal_seconds}"]
    else:
        options.append("--no-requeue")  # prepare and merge write whole objects: rerun by resubmitting, not looped
    options += list(slurm.extra_sbatch)
    location = spec.storage.join(run_id)
    env = {**location.env(), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    gpus = heavy and slurm.gpus > 0
    if gpus and spec.compute.device != "cpu":
        env[REQUIRE_GPU_ENV] = "1"  # a task that holds a GPU: CUDA works, or exit 1 saying why (runtime/gpu.py)
    shard = f"shard ${{SLURM_ARRAY_TASK_ID}} of {shards}, " if stage == "evaluate" else ""
    lines = ["#!/bin/bash",
             f"# landscape {landscape_job.__version__}: run {run_id}, {stage} "
             f"({spec.grid.size} points in {shards} shards)",
             *(f"#SBATCH {option}" for option in options),
             "set -eu",
             *slurm.setup,
             *(f"export {name}={shlex.quote(value)}" for name, value in env.items()),
             'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" MKL_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"']
    if stage == "prepare":
        spec_file = f"{logs}/prepare.spec.yaml"
        lines += [f"cat > {shlex.quote(spec_file)} <<'{SPEC_END}'", spec.to_yaml().rstrip("\n"), SPEC_END,
                  f"export LANDSCAPE_SPEC_FILE={shlex.quote(spec_file)}"]
    lines += [f'echo "landscape: {stage} {shard}job ${{SLURM_JOB_ID}}, attempt $((${{SLURM_RESTART_COUNT:-0}} + 1)) '
              f'on $(hostname)"',
              "exec " + shlex.join(_command(spec, run_id, slurm, stage, logs, gpus, cpus))]
    return BatchScript(stage, "\n".join(lines) + "\n", log)


def render_scripts(spec: Spec, run_id: str, slurm: SlurmSpec) -> SlurmRun:
    """The run's batch scripts; a ``UserError`` for a setting that cannot work, before anything is submitted."""
    times = stage_times(spec, slurm)
    logs = log_dir(spec, run_id, slurm)
    scripts = tuple(_script(spec, run_id, slurm, stage, logs, getattr(times, stage)) for stage in STAGES)
    return SlurmRun(run_id, scripts, logs)


def sbatch_lines(run: SlurmRun, folder: str = ".") -> list[str]:
    """The commands that submit the scripts by hand, chained as ``launcher submit --slurm`` chains them."""
    path = {s.stage: shlex.quote(f"{folder.rstrip('/')}/{s.file_name}") for s in run.scripts}
    return [f"mkdir -p {shlex.quote(run.log_dir)}",
            f"prepare=$(sbatch --parsable {path['prepare']})",
            f"evaluate=$(sbatch --parsable --dependency=afterok:$prepare {path['evaluate']})",
            f"merge=$(sbatch --parsable --dependency=afterok:$evaluate {path['merge']})"]
