"""``launcher``: the user's side of landscape.

    launcher validate surface.yaml          check a spec and print the work it implies
    launcher submit surface.yaml --local    run prepare, the shards and merge on this machine
    launcher submit surface.yaml            create the run's Jobs on the cluster (--wait to follow it)
    launcher submit surface.yaml --dry-run  print the plan (run id, storage, each stage's command), create nothing
    launcher status|logs|cancel <run>       watch, read or stop a run (cluster, or runs/<id>, file://, s3:// URL)
    launcher wait <run> [--timeout S]       until it ends: exit 0 succeeded, 1 failed, 124 timed out
    launcher list [-A] [-l k=v] [--storage ./runs]   the runs on the cluster, or in storage
    launcher pull <run> [DIR]               download surface.h5, the plots and the report
    launcher estimate surface.yaml          time a few points here, project device-hours and wall time
    launcher estimate surface.yaml --cluster   the same, measured in one pod on the cluster
    launcher plot surface.h5                re-plot a merged surface without recomputing
    launcher render surface.yaml            print the run's Kubernetes manifests (--slurm: its batch scripts)
    launcher submit surface.yaml --slurm    submit the stages as Slurm jobs (docs/slurm.md)
    launcher doctor --slurm [surface.yaml]  check the Slurm cluster: partitions, GPUs, runtime, shared paths
    launcher schema > surface.schema.json   the spec's JSON Schema, for editors (see launcher/spec_schema.py)
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from landscape_job.base import verbosity
from landscape_job.cli import pipe_safe, run_guarded
from launcher.commands import cancel, doctor, logs, pull, runs, status, wait
from launcher.commands import submit as cluster_submit
from launcher.commands.cluster_run import add_cluster_options
from launcher.kubernetes.render_cli import add_render_parser, run_render

if TYPE_CHECKING:
    from landscape_job.checks.estimate import MemoryEstimate
    from launcher.backends.base import Plan
    from landscape_job.spec.sections import Spec


#: ``launcher plot --format`` choices: matplotlib figures, then the exports of landscape_job.outputs.exports.
PLOT_FORMATS = ("png", "pdf", "vtp", "html")
#: The commands that talk to a cluster or read a run's storage, in the order of --help.
CLUSTER_COMMANDS = (status, wait, logs, runs, cancel, pull, doctor)


def _add_plot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vmin", type=float, help="lowest contour level (loss)")
    parser.add_argument("--vmax", type=float, help="highest contour level (loss)")
    parser.add_argument("--vlevel", type=float, help="spacing of contour levels")
    parser.add_argument("--log", action=argparse.BooleanOptionalAction, default=None,
                        help="log-scale loss (default: when the loss spans two decades or more)")
    parser.add_argument("--title", help="the figures' subject (default: the one the run recorded, plot.title)")


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The command line's parser, built once a process (~8 ms of add_argument calls; a process that
    calls ``main`` many times, as the spec-mutation tests do in-process, builds it once)."""
    parser = argparse.ArgumentParser(prog="launcher", description="Loss landscapes as batch jobs.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check a spec and print the normalised spec and its work")
    validate.add_argument("spec", type=Path)
    validate.add_argument("--storage", help="override the spec's storage (folder, file:// or s3:// URL)")
    validate.add_argument("--static", "--quick", dest="static", action="store_true",
                          help="check the spec only, executing nothing from it: no user code imported, no pip, "
                               "no model build, no data load, no look for local files (a spec from elsewhere; "
                               "a cluster spec whose paths are on the pods' volumes); lists the user code a full "
                               "validate and the run would execute (docs/security.md)")
    validate.add_argument("--json", action="store_true",
                          help="print one JSON object (spec, hash, defaults chosen, work) instead of YAML")

    submit = sub.add_parser("submit", help="start a run")
    submit.add_argument("spec", type=Path)
    submit.add_argument("--slurm", action="store_true",
                        help="submit the stages as Slurm batch jobs (the spec's slurm: section; docs/slurm.md)")
    submit.add_argument("--local", action="store_true",
                        help="run the stages as local processes instead of Jobs on the cluster")
    submit.add_argument("--storage", help="override the spec's storage (folder, file:// or s3:// URL)")
    submit.add_argument("--run-id", help="name the run (default: <name>-<UTC time>); an existing run "
                                         "with the same spec is resumed")
    submit.add_argument("--workers", type=int, help="local evaluate processes at once (default: the cores this "
                                                    "process may use, at most the shards)")
    submit.add_argument("--dry-run", action="store_true",
                        help="print the plan (run id, storage, spec hash, each stage's command; -o json|yaml: with "
                             "the objects) and create nothing")
    submit.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text",
                        help="with --dry-run: the plan as a record")
    cluster_submit.add_options(submit)

    estimate = sub.add_parser("estimate", help="time a few points here and project the run's cost")
    estimate.add_argument("spec", type=Path)
    estimate.add_argument("--points", type=int, default=3, help="points to time after one warm-up (default 3)")
    estimate.add_argument("--parallel", type=int,
                          help="shards running at once (default: as many as submit --local --workers would run: "
                               "min(cores, shards); with --cluster: all)")
    estimate.add_argument("--seconds", type=float, default=5.0,
                          help="time points for at least this long (default 5; not with --cluster)")
    estimate.add_argument("--cluster", action="store_true",
                          help="measure in one pod on the cluster, shaped like the evaluate pods")
    add_cluster_options(estimate)
    estimate.add_argument("--timeout", type=float, default=1800.0,
                          help="with --cluster: seconds to wait for the pod (default 1800)")
    estimate.add_argument("--interval", type=float, default=2.0, help="with --cluster: seconds between polls")
    estimate.add_argument("--json", action="store_true", help="print the measurement and projection as one JSON "
                                                              "object (not with --cluster)")

    plot = sub.add_parser("plot", help="re-plot a merged surface.h5, or compare several (--overlay)")
    plot.add_argument("surfaces", type=Path, nargs="+", metavar="surface")
    plot.add_argument("-o", "--out", type=Path, help="output folder (default: plots/ beside the file; with "
                                                     "--overlay ./compare)")
    plot.add_argument("--overlay", action="store_true",
                      help="several runs in one figure: curves on one axis, surfaces side by side on one colour "
                           "scale (compare.png/.pdf and compare.html)")
    plot.add_argument("--labels", help="with --overlay: comma-separated, one per file (default: the runs' names)")
    plot.add_argument("--metric", help="with --overlay: the dataset compared (default: loss; train_loss on planes)")
    plot.add_argument("--format", action="append", choices=list(PLOT_FORMATS),
                      help="repeatable (default: all of png, pdf, vtp (ParaView), html (viewer))")
    _add_plot_options(plot)
    add_render_parser(sub)
    schema = sub.add_parser("schema", help="print the spec's JSON Schema (draft 2020-12), for editors and CI checks",
                            description="Point VS Code's YAML extension at the output with a first line "
                                        "'# yaml-language-server: $schema=./surface.schema.json' in the spec.")
    schema.add_argument("--markdown", action="store_true",
                        help="print the spec reference (docs/spec-reference.md) instead")
    for command in CLUSTER_COMMANDS:
        command.add_parser(sub)
    verbosity.add_flags(parser, sub.choices.values())
    return parser


def checked_spec(path: Path, storage: str | None, quick: bool = False,
                 before_code: Callable[[Spec], None] | None = None,
                 inputs: Callable[[Spec], dict[str, int] | None] | None = None) -> tuple[Spec, dict[str, int] | None]:
    """The one check behind ``validate`` and ``submit --local``: what one refuses, the other refuses too.

    The spec (strict YAML, every key), its ``kubernetes:`` section (a typo there is named
    now, not at cluster submit), and unless ``quick`` what running here needs: a CUDA
    device if ``compute.device: cuda``, and the inputs (model builds, checkpoints fit,
    data loads). Nothing is written. Returns the spec and the samples per split.

    ``inputs`` checks the device and the inputs in place of ``checks.preflight.check_runs_here`` in this
    process (``submit --local`` from a fresh launcher runs them in a stage: ``launcher.local.precheck``).
    """
    from landscape_job.spec.parse import load_spec

    spec = load_spec(path, storage_override=storage, check_files=not quick)
    if spec.kubernetes:
        from launcher.kubernetes.section import parse_kubernetes

        parse_kubernetes(spec.kubernetes)
    if spec.slurm:
        from launcher.slurm.section import parse_slurm

        parse_slurm(spec.slurm)
    if quick:
        return spec, None
    if before_code is not None:  # what follows imports and runs the spec's code (validate names it first)
        before_code(spec)
    if inputs is None:  # in this process (torch is imported here: only for a spec that parsed)
        from landscape_job.checks.preflight import check_runs_here as inputs
    sizes = inputs(spec)
    if _gpu_memory(spec) is not None:  # the plan refuses only a shard over it (validate prints the plan apart)
        _planned_memory(spec, check=True)
    return spec, sizes


def _gpu_memory(spec: Spec) -> str | None:
    """``kubernetes.gpu_memory``, the one bound a memory plan is checked against. Without it a plan is
    only printed: a forward pass on the meta device imports ``torch._dynamo`` (torch's meta kernels
    call through it), about 1.2 s of CPU that ``submit --local`` need not pay for nothing."""
    from launcher.kubernetes.section import parse_kubernetes

    return parse_kubernetes(spec.kubernetes).gpu_memory if spec.kubernetes else None


def _planned_memory(spec: Spec, check: bool) -> list[str]:
    """The memory plan's lines (model + θ* + directions + activations, counted on the meta device);
    with ``check``, a spec that cannot fit ``kubernetes.gpu_memory`` is refused in one line. A
    model the meta device cannot run forward is not planned (said at -v), never refused."""
    from landscape_job.base.errors import UserError
    from landscape_job.checks.memory_plan import check_fits, plan_memory, planned_lines
    from landscape_job.spec.localize import localize

    from launcher.kubernetes.section import parse_quantity

    if spec.series is not None:
        return []
    gpu_memory = _gpu_memory(spec)
    total = int(parse_quantity(gpu_memory)) if gpu_memory is not None else None
    source = f"kubernetes.gpu_memory {gpu_memory}"
    try:
        plan = plan_memory(localize(spec))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's model on the meta device
        verbosity.info(f"memory plan: not available for this model on the meta device ({type(err).__name__})")
        return []
    if check and total is not None:
        check_fits(spec, plan, total, source)
    return planned_lines(plan, total, source)


def _validate(args: argparse.Namespace) -> None:
    from landscape_job.spec.user_code import user_code

    def announce(parsed: Spec) -> None:  # the full check imports and calls the spec's code: say which first
        # (stdout, as comments of the text output; stderr with --json), so a refusal stays stderr's one line
        for code in user_code(parsed):
            print(f"# validate: executing user code, {code.describe()}", flush=True,
                  file=sys.stderr if args.json else sys.stdout)

    spec, sizes = checked_spec(args.spec, args.storage, quick=args.static, before_code=announce)
    code = [c.describe() for c in user_code(spec)]
    if args.json:
        print(json.dumps({"valid": True, "spec_file": str(args.spec), "spec_hash": spec.hash, "spec": spec.to_dict(),
                          "defaults_chosen": list(spec.notes), "work": describe_work(spec, sizes),
                          "samples": sizes, "static": args.static, "user_code": code}, default=str))
        return
    print(f"# {args.spec}: valid (spec hash {spec.hash[:12]})")
    print(spec.to_yaml().rstrip())
    print("\n# defaults chosen:" if spec.notes else "", *(f"#   {n}" for n in spec.notes), sep="\n")
    print("# work:", *(f"#   {line}" for line in describe_work(spec, sizes)), sep="\n")
    for line in [] if args.static else _planned_memory(spec, check=False):
        print(f"#   {line}")
    if code:
        said = "not executed (--static); a run executes" if args.static else "executed by this check and by a run"
        print(f"# user code, {said}:", *(f"#   {line}" for line in code), sep="\n")


#: A rule of thumb, not a measurement of the spec at hand: a shard's process start-up and
#: model/data setup, about 3-5 s for the digits example on this project's 2 CPU cores
#: (docs/performance.md; a cluster pod adds scheduling and CUDA initialisation).
SHARD_START_SECONDS = 5.0
#: Below this many points a shard's start-up and setup likely outweigh its compute: it takes
#: a point of SHARD_START_SECONDS / 16 (~0.3 s) or more for the points to cost as much.
MIN_POINTS_PER_SHARD = 16


def describe_work(spec: Spec, data_sizes: Mapping[str, int] | None = None) -> list[str]:
    """The work a spec implies, in the lines ``launcher validate`` prints."""
    grid, shards = spec.grid, spec.compute.shards
    per_shard = -(-grid.size // shards)
    dims = f"{grid.nx}" if grid.ndim == 1 else f"{grid.nx} x {grid.ny}"
    from landscape_job.spec.sections import describe_precision

    lines = [
        f"grid: {dims} = {grid.size} points ({grid.ndim}-D)",
        f"precision: {describe_precision(spec.compute.precision)}",
        f"shards: {shards} ({per_shard} points per shard at most)",
        f"passes over the data: {grid.size} per split, splits: {', '.join(spec.data.splits)}",
    ]
    from launcher.kubernetes.section import DEFAULT_PARALLELISM_CAP, evaluate_parallelism

    if (spec.kubernetes or {}).get("parallelism") is None and shards > DEFAULT_PARALLELISM_CAP:
        lines.append(f"on a cluster: kubernetes.parallelism unset, so {evaluate_parallelism(None, shards)} "
                     f"of the {shards} evaluate pods at once (set it to change)")
    from landscape_job.spec.outputs import PDF_DEFAULT_MAX_LINES

    if spec.plot.formats is None and grid.ndim == 2 and max(grid.nx, grid.ny) > PDF_DEFAULT_MAX_LINES:
        lines.append(f"plot: no PDF by default above {PDF_DEFAULT_MAX_LINES} lines an axis (the figures are drawn "
                     f"thinned there); plot.formats: [png, pdf, vtp, html] draws it")
    if shards > 1 and per_shard < MIN_POINTS_PER_SHARD:
        suggested = max(1, grid.size // MIN_POINTS_PER_SHARD)
        lines.append(f"warning: {per_shard} points per shard: by a rule of thumb each shard also pays about "
                     f"{SHARD_START_SECONDS:.0f} s of process start-up and model and data setup, more than its "
                     f"points unless a point costs over {SHARD_START_SECONDS / MIN_POINTS_PER_SHARD:.1f} s; "
                     f"consider compute.shards: {suggested} (launcher estimate measures both)")
    if spec.series is not None and not spec.series.listed:  # a glob or S3 prefix the pods will list: no count yet
        return [f"series: checkpoints listed by the pods ({', '.join(spec.series.checkpoints)})", lines[1],
                f"shards: {shards}"]
    if spec.series is not None:
        lines[0] = (f"series: {grid.size} checkpoints (steps {spec.series.steps[0]}..{spec.series.steps[-1]}), "
                    f"threshold (2 + 2β)/η = {spec.series.threshold:.6g}; metrics {', '.join(spec.series.metrics)}")
    if data_sizes:
        samples = sum(data_sizes.values())
        lines.append(f"forward samples: {grid.size} x {samples:,} = {grid.size * samples:,}")
    if spec.uses_hessian:
        h = spec.hessian
        where = f"{grid.size} points and the centre" if "hessian" in spec.metrics else "the centre only"
        where = f"each of the {grid.size} checkpoints" if spec.series is not None else where
        lines.append(f"hessian: up to {h.iterations} Hessian-vector products (each about 3 passes over "
                     f"the {h.split} split{f', {h.subset} samples' if h.subset else ''}) at {where}")
    return lines


def _submit(args: argparse.Namespace) -> int | None:
    """One plan, made once and then created: ``--dry-run`` prints it instead (``launcher.backends``)."""
    from landscape_job.base.errors import UserError
    from landscape_job.storage.location import check_run_id

    from launcher.backends.base import make_backend
    from launcher.backends.choose import submit_backend
    from launcher.local.runner import RunInterrupted, new_run_id

    if args.output != "text" and not args.dry_run:
        raise UserError("-o: only with --dry-run")
    backend = make_backend(submit_backend(args), args)  # a flag of the other backend: one line, exit 2
    if args.run_id is not None:
        check_run_id(args.run_id, "--run-id")
    spec = backend.checked_spec(args.spec, args.storage)
    plan = backend.plan(spec, args.run_id or new_run_id(spec.name, spec.storage))
    if args.dry_run:
        print("\n".join(plan.lines()) if args.output == "text" else formatted_plan(plan, args.output))
        return
    try:
        told = backend.submit(plan)
    except RunInterrupted as stop:  # its workers stopped and saved what they finished: say how to go on
        print(f"launcher: {stop.reason}; run {stop.run_id} is kept; resume it with: "
              f"{resume_command(args, stop.run_id)}", file=sys.stderr)
        return 128 + int(stop.signum)
    if told:
        print(told)
    return None


def formatted_plan(plan: Plan, output: str) -> str:
    """``submit --dry-run -o json|yaml``: the plan as a record, its objects as rendered."""
    from launcher.commands.views import formatted

    return formatted(plan.to_dict(), output)


def resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The ``launcher submit`` line that resumes ``run_id`` (same spec, storage and workers)."""
    words = ["launcher", "submit", str(args.spec), "--local", "--run-id", run_id]
    words += ["--storage", args.storage] if args.storage else []
    words += ["--workers", str(args.workers)] if args.workers else []
    return shlex.join(words)


def _estimate(args: argparse.Namespace) -> None:
    from landscape_job.base.errors import UserError
    from landscape_job.spec.parse import load_spec

    from landscape_job.forkserver import FORKS
    from launcher.estimate import describe, estimate
    from launcher.local.runner import available_cores, local_workers, worker_threads

    for flag, value in (("--points", args.points), ("--parallel", args.parallel)):
        if value is not None and value < 1:
            raise UserError(f"{flag}: must be at least 1, got {value}")
    if args.cluster:
        from launcher.kubernetes.estimate import run_estimate_cluster

        if args.json:
            raise UserError("--json: not with --cluster (the pod's own line is JSON: landscape-job estimate)")

        print("\n".join(run_estimate_cluster(args)))
        return
    for flag, value in (("--kubeconfig", args.kubeconfig), ("--context", args.context), ("-n", args.namespace)):
        if value is not None:
            raise UserError(f"{flag}: only with --cluster")
    spec = load_spec(args.spec)
    # Projected for a local run of this machine: as many workers as `submit --local` starts, each
    # with its share of the cores (launcher.local.runner: one rule for both).
    parallel = local_workers(spec.compute.shards, args.parallel)
    threads = worker_threads(parallel)
    verbosity.info(f"timing points for {args.seconds:g} s with {threads} thread{'s' if threads > 1 else ''} "
                   f"(a local worker's share of {available_cores()} cores), {parallel} workers at a time as "
                   f"submit --local runs them, then the fixed costs ...")
    plan_lines = _planned_memory(spec, check=True)  # a shard that cannot fit its GPU: refused before timing
    measured = estimate(spec, args.points, parallel, seconds=args.seconds, local_threads=threads,
                        forked=FORKS)
    memory, memory_lines = _memory(spec)
    memory_lines += plan_lines
    if args.json:
        print(json.dumps({"estimate": {**asdict(measured), "compute_hours": measured.compute_hours,
                                       "wall_seconds": measured.wall_seconds,
                                       "wall_range_seconds": list(measured.wall_range)},
                          "memory": asdict(memory)}))
        return
    print("\n".join(describe(measured)))
    print("\n".join(memory_lines))


def _memory(spec: Spec) -> tuple[MemoryEstimate, list[str]]:
    """The estimate's memory part: a shard's peak against ``kubernetes.gpu_memory``, or else the
    GPU measured here (a CPU has none: then only the peak, and how to compare it)."""
    from landscape_job.checks.estimate import describe_memory, estimate_memory
    from landscape_job.surface.evaluator_setup import resolve_device
    from landscape_job.runtime.memory import device_total_bytes

    from launcher.kubernetes.section import parse_kubernetes, parse_quantity

    memory = estimate_memory(spec)
    gpu_memory = parse_kubernetes(spec.kubernetes).gpu_memory if spec.kubernetes else None
    if gpu_memory is not None:
        target, source = int(parse_quantity(gpu_memory)), f"kubernetes.gpu_memory {gpu_memory}"
    else:
        target, source = device_total_bytes(resolve_device(spec.compute.device)), "this GPU"
    return memory, describe_memory(memory, spec, target, source)


def _plot(args: argparse.Namespace) -> None:
    from landscape_job.base.errors import UserError
    from landscape_job.outputs.exports import EXPORT_FORMATS, write_exports
    from landscape_job.plots import PlotOptions, plot_surface

    for path in args.surfaces:
        if not path.is_file():
            raise UserError(f"{path}: surface file not found")
    if args.overlay or len(args.surfaces) > 1:
        _overlay(args)
        return
    if args.labels or args.metric:
        raise UserError(f"--{'labels' if args.labels else 'metric'}: only with --overlay")
    args.surface = args.surfaces[0]
    out = args.out or args.surface.parent / "plots"
    from landscape_job.series.file import is_series_file

    if is_series_file(args.surface):  # series.h5: its own figures and page (the surface options do not apply)
        from landscape_job.series.figures import plot_series
        from landscape_job.series.file import load_series
        from landscape_job.series.page import write_series_html

        series = load_series(args.surface)
        written = [*plot_series(series, out), write_series_html(series, out / "series.html")]
        print(f"{len(written)} plots in {out}")
        return
    chosen = args.format or list(PLOT_FORMATS)
    figures = tuple(f for f in chosen if f not in EXPORT_FORMATS)
    exports = [f for f in chosen if f in EXPORT_FORMATS]
    # The flags share the spec's plot keys, so they are checked by the same rules and messages.
    options = PlotOptions.from_spec(args, formats=figures or None)
    written = plot_surface(args.surface, out, options) if figures else []
    written += write_exports(args.surface, out, exports, options) if exports else []
    print(f"{len(written)} plots in {out}")


def _overlay(args: argparse.Namespace) -> None:
    """``plot a.h5 b.h5 --overlay``: the comparison figure and page (``plots.compare``, ``viewer.compare_html``)."""
    import matplotlib

    from landscape_job.base.errors import UserError
    from landscape_job.outputs.viewer import compare_html, compare_payload
    from landscape_job.plots import PlotOptions
    from landscape_job.plots.compare import compare_figure
    from landscape_job.plots.style import RC, save
    from landscape_job.surface.file import load_surface

    if not args.overlay:
        raise UserError(f"{len(args.surfaces)} files: add --overlay to draw them in one figure, or plot one at a time")
    if len(args.surfaces) < 2:
        raise UserError("--overlay: give two or more surface files")
    labels = [t.strip() for t in args.labels.split(",")] if args.labels else None
    chosen = args.format or list(PLOT_FORMATS)
    options = PlotOptions.from_spec(args, formats=tuple(f for f in chosen if f in ("png", "pdf")) or None)
    surfaces = [load_surface(p) for p in args.surfaces]
    out = args.out or Path("compare")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if any(f in ("png", "pdf") for f in chosen):
        with matplotlib.rc_context(RC):
            written += save(compare_figure(surfaces, labels, args.metric, options), out, "compare", options)
    if "html" in chosen:
        page = out / "compare.html"
        page.write_text(compare_html(compare_payload(surfaces, labels, args.metric, options)), encoding="utf-8")
        written.append(page)
    print(f"{len(written)} comparison files in {out}")


def _schema(args: argparse.Namespace) -> None:
    if args.markdown:
        from launcher.spec_reference import spec_reference

        print(spec_reference(), end="")
        return
    from launcher.spec_schema import print_schema

    print_schema()


def _render(args: argparse.Namespace) -> None:
    """``launcher render``: the Kubernetes objects, or with ``--slurm`` the batch scripts."""
    if args.slurm:
        from launcher.slurm.cli import render_scripts

        return render_scripts(args)
    return run_render(args)


@pipe_safe
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbosity.set_from(args)
    handler = {"validate": _validate, "submit": _submit, "plot": _plot, "render": _render, "estimate": _estimate,
               "schema": _schema,
               **{command.NAME: command.run for command in CLUSTER_COMMANDS}}[args.command]
    return run_guarded(lambda: handler(args), "launcher")


if __name__ == "__main__":
    sys.exit(main())
