"""The Python API: loss landscapes of an in-memory model, from a notebook.

    from landscape_job import api as ls
    plane = ls.plane(model, {"train": (X, y), "test": (X_test, y_test)}, x="-1:1:21", y="-1:1:21")
    plane["train_loss"]                    # (21, 21), Z[j, i] = f(x[i], y[j])
    figures = plane.plot()                 # {"train_loss_2d_contour": Figure, ...}
    plane.save("surface.h5")               # the paper's layout, as a run's merge writes it
    curve = ls.interpolate(model, other, data)
    ls.hessian(model, data).max_eig        # sharpness at θ*
    ls.plane(gpt2, ids, task="causal_lm")  # token ids (N, T), {"input_ids", "attention_mask"} or a DataLoader
    ls.line(model, data, loss=my_loss, metrics={"top5": top5})   # Python functions, not only names
    ls.compare([plane_sgd, plane_sam])     # several runs on shared axes and one colour scale

There is no second implementation here: the arguments become a spec (parsed by
``spec.parse_spec``, so defaults, rules and error messages are the CLI's, named by their
spec keys), the directions come from ``direction_builders``, the points from the
``Evaluator`` a shard uses, and the file from the merge stage's ``surface_file`` (``surface.provenance``;
read in memory, written when saved). Only
the inputs differ: the model and the data are in memory, not in files. So for the same
weights, data and directions the arrays equal a CLI run's (``tests/api/test_api.py``).

Imported as ``landscape_job.api.compute``, not re-exported by the package: ``landscape_job``'s
``__init__`` imports nothing (the launcher imports the package without torch, and a
re-export would close an import circle with every module that reads ``__version__``).

Big grids belong on a cluster: ``launcher.api.submit`` sends a spec and returns a handle
whose ``pull()`` gives a ``Landscape`` like these.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np
import torch
from torch import nn

import landscape_job
from landscape_job.api.callables import batch_loss_ref, bind_loss, bind_metrics
from landscape_job.api.display import progress as progress_bar
from landscape_job.api.result import Landscape
from landscape_job.datasets.custom import assemble, split_tensors
from landscape_job.datasets.builtin import Split, subset_indices
from landscape_job.surface.direction_builders import BuildContext, build
from landscape_job.surface.directions import Directions, direction_file_bytes
from landscape_job.base.errors import UserError
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.evaluator_setup import resolve_device
from landscape_job.spec.metrics import SPLITS
from landscape_job.models.outputs import select_output
from landscape_job.run.manifest import Manifest
from landscape_job.spec.sections import Spec
from landscape_job.spec.parse import parse_spec
from landscape_job.surface.centre import check_outputs, check_tokens
from landscape_job.surface.losses import BatchFn, batch_fn_sum

if TYPE_CHECKING:  # imported where used: a plain plane needs no Hessian, token data, checkpoint or model zoo
    from landscape_job.api.curvature import Curvature
from landscape_job.surface.provenance import surface_in_memory

__all__ = ["Landscape", "hessian", "interpolate", "line", "plane", "surface"]

#: What ``data`` may be: ``(inputs, labels)`` tensors or arrays, a Dataset of (input, label)
#: items, a DataLoader, or a mapping ``{"train": ..., "test": ...}`` of those.
Data = Union[tuple, torch.utils.data.Dataset, torch.utils.data.DataLoader, Mapping[str, Any]]
#: A model to interpolate towards or a trajectory point: a module, its state_dict, or a checkpoint file.
Weights = Union[nn.Module, Mapping[str, torch.Tensor], str, Path]


# --------------------------------------------------------------------------- data


def _tensors(data: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (inputs, labels): checked as a ``tensors`` data set's files are."""
    if isinstance(data, torch.utils.data.DataLoader):
        # Its data set, in order: a shuffling loader must not change which samples a subset takes.
        data = data.dataset
    return split_tensors(data, where)


def _splits(data: Data, classes: int | None, task: str = "classification") -> list[Split]:
    """``data`` as the evaluator's splits: one data set is ``train``; a mapping names its splits.
    For a language-model task, each split is token data (``datasets.tokens.token_split``)."""
    one = not isinstance(data, Mapping) or "input_ids" in data
    given = {"train": data} if one else dict(data)
    unknown = [name for name in given if name not in SPLITS]
    if unknown or not given:
        raise UserError(f"data: name the splits {' and '.join(SPLITS)}, got {unknown or 'none'}")
    if task != "classification":
        from landscape_job.datasets.tokens import token_split

        return [token_split(given[name], name, task, classes) for name in SPLITS if name in given]
    for name, split in given.items():
        first = split[0] if isinstance(split, (tuple, list)) and split else split
        if isinstance(first, Mapping) or (isinstance(first, torch.Tensor) and not first.is_floating_point()
                                          and first.dim() == 2):
            raise UserError(f"data[{name!r}]: integer token ids; name the language-model task: task='causal_lm' "
                            "(or masked_lm, sequence_classification)")
    pairs = {name: _tensors(given[name], f"data[{name!r}]") for name in SPLITS if name in given}
    found = assemble("the data", pairs, classes)
    return [Split(inputs=x, labels=y, num_classes=found.num_classes, name=name, classes=found.classes)
            for name, (x, y) in pairs.items()]


# --------------------------------------------------------------------------- the spec


def _weights_file(weights: Weights, folder: Path, name: str) -> str:
    """A target or trajectory point as the checkpoint file the direction builders read."""
    if isinstance(weights, (str, Path)):
        return str(Path(weights).resolve())
    path = folder / f"{name}.pt"
    if isinstance(weights, nn.Module):
        from landscape_job.models.checkpoints import save_checkpoint

        save_checkpoint(weights, path)
    else:
        torch.save({"state_dict": {k: v.detach().cpu() for k, v in weights.items()}}, path)
    return str(path)


def _directions_section(directions: str | Directions | Path, folder: Path, targets: Sequence[Weights],
                        trajectory: Sequence[Weights], options: Mapping[str, Any]) -> dict[str, Any]:
    section = {k: v for k, v in options.items() if v is not None}
    if isinstance(directions, Directions):
        path = folder / "directions.h5"
        path.write_bytes(direction_file_bytes(directions, {}))
        return {"type": "file", "file": str(path), **section}
    if isinstance(directions, Path) or (isinstance(directions, str) and directions.endswith(".h5")):
        return {"type": "file", "file": str(Path(directions).resolve()), **section}
    if targets:
        section["targets"] = [_weights_file(t, folder, f"target-{i}") for i, t in enumerate(targets)]
    if trajectory:
        section["trajectory"] = [_weights_file(t, folder, f"trajectory-{i:04d}") for i, t in enumerate(trajectory)]
    return {"type": directions, **section}


def _spec(model: nn.Module, splits: list[Split], folder: Path, *, x: str, y: str | None,
          directions: dict[str, Any], settings: Mapping[str, Any]) -> Spec:
    """The spec of a notebook's computation: the model and data stand for in-memory objects."""
    hessian = settings.get("hessian")
    raw: dict[str, Any] = {
        "name": settings.get("name", "notebook"),
        "model": {"arch": type(model).__name__, "checkpoint": "in-memory",
                  **({"output": settings["output"]} if settings.get("output") is not None else {})},
        "data": {"dataset": "in-memory data", "splits": [s.name for s in splits]},
        **({"task": settings["task"]} if settings.get("task", "classification") != "classification" else {}),
        "loss": settings.get("loss", "cross_entropy"),
        **({"metrics": list(settings["metrics"])} if settings.get("metrics") is not None else {}),
        "directions": directions,
        "grid": {"x": x, **({"y": y} if y is not None else {})},
        "compute": {k: settings[k] for k in ("precision", "batch_size", "device", "points_per_forward")
                    if settings.get(k) is not None},
        "storage": str(folder),
        **({"hessian": dict(hessian)} if hessian else {}),
    }
    return parse_spec(raw, base_dir=folder, check_files=False)


# --------------------------------------------------------------------------- the computation


def _centre(model: nn.Module, spec: Spec) -> nn.Module:
    """θ*: a copy of the model (the caller's is never moved, cast or hooked), as build_centre_model makes it."""
    centre = copy.deepcopy(model).cpu()
    if spec.compute.precision == "fp64":
        centre = centre.double()
    if spec.task != "classification" and spec.model.output is None:
        from landscape_job.models.hf import select_logits

        if getattr(getattr(centre, "config", None), "use_cache", None):
            centre.config.use_cache = False  # a loss needs no key/value cache
        return select_logits(centre).eval()
    return select_output(centre, spec.model.output).eval()


def _hessian_split(splits: list[Split], spec: Spec) -> Split:
    """``hessian.split``, subset by ``hessian.subset`` as ``curvature.hessian_split`` does for files."""
    named = {s.name: s for s in splits}
    h = spec.hessian
    if h.split not in named:
        raise UserError(f"hessian.split: the data has no {h.split} split (it has {', '.join(named)})")
    split = named[h.split]
    if h.subset is None:
        return split
    if h.subset > len(split.labels):
        raise UserError(f"hessian.subset: {h.subset} is larger than the {h.split} split ({len(split.labels)} samples)")
    chosen = subset_indices(len(split.labels), h.subset, h.subset_seed)
    return dataclasses.replace(split, inputs=split.inputs[chosen], labels=split.labels[chosen])


def _centre_hessian(centre: nn.Module, split: Split, spec: Spec,
                    batch_fn: BatchFn | None = None) -> tuple[Directions | None, dict]:
    """As the prepare stage: on a copy placed on the run's device and precision."""
    from landscape_job.surface.curvature import centre_analysis

    device = resolve_device("auto" if spec.compute.device == "cuda" else spec.compute.device)
    dtype = torch.float64 if spec.compute.precision == "fp64" else torch.float32
    placed = copy.deepcopy(centre).to(device, dtype).eval()
    return centre_analysis(placed, split, spec, two_d=spec.grid.ndim == 2, batch_fn=batch_fn)


def _check(centre: nn.Module, split: Split, spec: Spec, batch_fn: BatchFn | None) -> None:
    """The model's outputs fit the loss (``check_outputs``); with ``batch_fn``, one batch's value has a loss's shape."""
    if batch_fn is None:
        check_outputs(centre, split, spec)
        return
    dtype = next(centre.parameters()).dtype
    inputs = split.inputs[:2]
    with torch.no_grad():
        batch_fn_sum(batch_fn, centre, inputs.to(dtype) if inputs.is_floating_point() else inputs, split.labels[:2])


def _metrics_with(metrics: Any, batch_fn: BatchFn | None) -> list[str] | None:
    """The spec's metrics from the API's: names, references, functions; a mapping adds to loss and accuracy.
    None: the task's defaults (with batch_fn: the loss alone, as nothing else can be computed)."""
    if metrics is None:
        return ["loss"] if batch_fn is not None else None
    chosen = bind_metrics(metrics)
    if isinstance(metrics, Mapping):
        chosen = ["loss", *([] if batch_fn is not None else ["accuracy"]), *chosen]
    if batch_fn is not None and [m for m in chosen if m not in ("loss", "hessian")]:
        raise UserError("metrics: with batch_fn only loss (and hessian) can be computed: the other metrics need "
                        "the model's outputs, which batch_fn does not return")
    return chosen


def _manifest(spec: Spec, directions: Directions, hessian: dict | None, pca: Any) -> Manifest:
    return Manifest(spec_hash=spec.hash, direction_hash=directions.hash, dir_type=directions.dir_type,
                    tensors=len(directions.x), parameters=sum(t.numel() for t in directions.x),
                    cosine_xy=directions.cosine(), seed=spec.directions.seed,
                    code_version=landscape_job.__version__, torch_version=torch.__version__, hessian=hessian,
                    pca=None if pca is None else {"explained_variance": pca.explained_variance,
                                                  "trajectory": pca.trajectory.to_dict()})


def _evaluate(evaluator: Evaluator, spec: Spec, progress: bool) -> dict[str, np.ndarray]:
    """Every grid point in flat order, ``points_per_forward`` at a time, as one shard's loop does."""
    xs, ys = spec.grid.coordinates(np.arange(spec.grid.size))
    evaluator.warm_up()
    group = evaluator.points_per_forward or 1
    values: list[dict[str, float]] = []
    # A text bar in a terminal; in a notebook a line whose final state (100%) is what the saved notebook keeps.
    with progress_bar(spec.grid.size, spec.directions.type, "pt", enabled=progress) as bar:
        for start in range(0, spec.grid.size, group):
            points = [(float(a), float(b)) for a, b in zip(xs[start:start + group], ys[start:start + group])]
            values += evaluator.evaluate_many(points)
            bar.update(len(points))
    return {name: np.array([v[name] for v in values], dtype=np.float64) for name in evaluator.metric_names()}


def surface(model: nn.Module, data: Data, *, x: str = "-1:1:21", y: str | None = "-1:1:21",
            directions: str | Directions | Path = "random", targets: Sequence[Weights] = (),
            trajectory: Sequence[Weights] = (), seed: int = 0, dir_type: str | None = None, norm: str | None = None,
            ignore: str | None = None, same_dir: bool | None = None, orthogonalize: bool | None = None,
            loss: str | Callable[..., Any] = "cross_entropy",
            metrics: Sequence[str | Callable[..., Any]] | Mapping[str, Callable[..., Any]] | None = None,
            task: str = "classification", batch_fn: BatchFn | None = None,
            hessian: Mapping[str, Any] | None = None, precision: str | None = None, batch_size: int | str | None = None,
            device: str | None = None, points_per_forward: int | str | None = None, output: str | int | None = None,
            classes: int | None = None, name: str = "notebook", progress: bool = True) -> Landscape:
    """The loss (and ``metrics``) of ``model`` at θ* + a·δ + b·η over the grid ``x`` × ``y`` (``y=None``: a line).

    The keywords are the spec's keys: ``x``/``y`` are ``grid.x``/``grid.y`` (``"min:max:num"``);
    ``directions`` is ``directions.type`` (random, interpolate, plane, pca, hessian), or a
    direction file (a path ending in .h5) or ``Directions`` to use as written; ``targets``
    (interpolate, plane) and ``trajectory`` (pca) are modules, state_dicts or checkpoint
    files; ``seed``, ``dir_type``, ``norm``, ``ignore``, ``same_dir``, ``orthogonalize`` are
    ``directions.*`` (None: the type's default); ``hessian`` the ``hessian`` section;
    ``precision``, ``batch_size``, ``device``, ``points_per_forward`` are ``compute.*``;
    ``output`` is ``model.output``; ``classes`` is ``data.classes``. The model is copied,
    never changed. ``progress`` shows a bar (in a notebook, a line that ends at 100%).

    ``task`` is the spec's ``task``: ``causal_lm``, ``masked_lm`` or ``sequence_classification``
    take token data (integer ids (N, T), a dict of ``input_ids``/``attention_mask``/``labels``, or a
    Hugging Face DataLoader of such dicts) and a Hugging Face model (its ``.logits`` are used);
    ``metrics`` (None) are then loss, perplexity and token_accuracy, else loss and accuracy.

    Python functions work where the spec takes ``python:`` references: ``loss=fn`` with
    ``fn(outputs, labels)`` returning per-sample losses (B,) or their mean; ``metrics``
    a list of names and functions, or ``{"name": fn}`` (added to loss and accuracy; the
    datasets are ``train_<name>``, ``test_<name>``); ``batch_fn(model, (inputs, labels))``
    returning per-sample losses, in place of the forward and the loss, for a loss the
    built-ins cannot express (then only the loss and the Hessian are computed).
    """
    if batch_fn is not None and (not isinstance(loss, str) or loss != "cross_entropy"):
        raise UserError("loss: give loss or batch_fn, not both (batch_fn computes the loss itself)")
    if batch_fn is not None and task != "classification":
        raise UserError("batch_fn: give a task or batch_fn, not both (batch_fn computes the loss itself)")
    loss_ref = batch_loss_ref(batch_fn) if batch_fn is not None else bind_loss(loss)
    metric_refs = _metrics_with(metrics, batch_fn)
    splits = _splits(data, classes, task)
    with tempfile.TemporaryDirectory(prefix="landscape-api-") as tmp:
        folder = Path(tmp)
        section = _directions_section(directions, folder, targets, trajectory,
                                      {"seed": seed, "dir_type": dir_type, "norm": norm, "ignore": ignore,
                                       "same_dir": same_dir, "orthogonalize": orthogonalize})
        spec = _spec(model, splits, folder, x=x, y=y, directions=section, settings=dict(
            name=name, output=output, loss=loss_ref, metrics=metric_refs, hessian=hessian, precision=precision,
            batch_size=batch_size, device=device, points_per_forward=points_per_forward, task=task))
        centre = _centre(model, spec)
        if batch_fn is None:
            check_tokens(centre, splits, spec)
        _check(centre, splits[0], spec, batch_fn)
        hessian_split = _hessian_split(splits, spec) if spec.uses_hessian else None
        eigen, summary = (_centre_hessian(centre, hessian_split, spec, batch_fn) if hessian_split is not None
                          else (None, None))
        built = build(spec.directions, centre, BuildContext(two_d=spec.grid.ndim == 2, eigen=eigen))
    manifest = _manifest(spec, built.directions, summary, built.pca)
    evaluator = Evaluator(centre, built.directions, splits, compute=spec.compute,
                          device=resolve_device(spec.compute.device), loss=spec.loss, metrics=spec.metrics,
                          hessian=spec.hessian, hessian_split=hessian_split if "hessian" in spec.metrics else None,
                          task=spec.task, batch_fn=batch_fn)
    flat = _evaluate(evaluator, spec, progress)
    surface, write = surface_in_memory(spec, manifest, flat, f"<{spec.name}: surface.h5>")
    return Landscape(surface=surface, hessian=summary, _file=write)


def plane(model: nn.Module, data: Data, x: str = "-1:1:21", y: str = "-1:1:21", **options: Any) -> Landscape:
    """A 2-D surface (random directions unless ``directions=`` says otherwise); see ``surface``."""
    return surface(model, data, x=x, y=y, **options)


def line(model: nn.Module, data: Data, x: str = "-1:1:51", **options: Any) -> Landscape:
    """A 1-D curve through θ* along one direction (random unless ``directions=`` says otherwise)."""
    return surface(model, data, x=x, y=None, **options)


def interpolate(model: nn.Module, target: Weights, data: Data, x: str = "-0.5:1.5:41", **options: Any) -> Landscape:
    """The curve θ* + a·(θ_target − θ*): a = 0 is ``model``, a = 1 is ``target`` (Goodfellow et al.)."""
    return surface(model, data, x=x, y=None, directions="interpolate", targets=[target], **options)


def hessian(model: nn.Module, data: Data, *, split: str = "train", loss: str | Callable[..., Any] = "cross_entropy",
            batch_fn: BatchFn | None = None, output: str | int | None = None, precision: str | None = None,
            device: str | None = None, classes: int | None = None, **options: Any) -> Curvature:
    """λmax (sharpness), λmin and the trace of the Hessian at θ*, by Lanczos and Hutchinson; with
    ``density_steps`` (60-100) its eigenvalue density by stochastic Lanczos quadrature (``.plot()``).

    ``options`` are the ``hessian`` section's keys (``iterations``, ``tolerance``, ``ignore``,
    ``subset``, ``trace_samples``, ``seed``, ``batch_size``, ``density_steps``, ``density_probes``).
    ``ignore="biasbn"`` (the default, the paper's) leaves out biases and BatchNorm's
    parameters; the result's ``tensors`` and ``excluded`` name them (``ignore="none"``: all).
    """
    if batch_fn is not None and (not isinstance(loss, str) or loss != "cross_entropy"):
        raise UserError("loss: give loss or batch_fn, not both (batch_fn computes the loss itself)")
    loss_ref = batch_loss_ref(batch_fn) if batch_fn is not None else bind_loss(loss)
    splits = _splits(data, classes)
    with tempfile.TemporaryDirectory(prefix="landscape-api-") as tmp:
        spec = _spec(model, splits, Path(tmp), x="-1:1:3", y=None, directions={"type": "random"},
                     settings=dict(output=output, loss=loss_ref, metrics=("loss", "hessian"), precision=precision,
                                   device=device, hessian={"split": split, **options}))
    centre = _centre(model, spec)
    _check(centre, splits[0], spec, batch_fn)
    _, summary = _centre_hessian(centre, _hessian_split(splits, spec), spec, batch_fn)
    from landscape_job.api.curvature import Curvature

    return Curvature.from_summary(summary)
