"""The user's own data sets, without editing our code: ``tensors``, ``imagefolder`` and ``python:`` factories.

- ``tensors``: ``data.root`` (a folder, an archive, an S3 prefix) holds ``train.pt`` /
  ``test.pt`` (``torch.save`` of ``{"inputs": X, "labels": y}`` or ``(X, y)``, read with
  ``weights_only=True``) or ``train.npz`` / ``test.npz`` (arrays ``inputs`` and ``labels``,
  read without pickle). The inputs are used as they are: already normalised.
- ``imagefolder``: torchvision's ImageFolder layout under ``data.root``: ``train/<class>/*``
  and ``test/<class>/*``, all images the same size; ``data.options.mean`` / ``std``
  normalise the [0, 1] pixels per channel.
- ``python:package.module:function``: the user's factory, called with ``data.options`` as
  keyword arguments (and ``split=`` if it takes one), returning a torch Dataset of
  ``(input, label)`` items (or a DataLoader over one: its data set is read in order, with
  its collate_fn), or a ``(train, test)`` pair, or ``{"train": ..., "test": ...}``,
  or a pair of tensors ``(inputs, labels)``. A single data set serves every split.
  Its items are used as they are (its own transforms apply).

The number of classes is ``data.classes``, or else the largest label + 1 over the splits
loaded. Float labels are regression targets (``(N,)`` or ``(N, k)``), for ``loss: mse``
or a ``python:`` loss; the model's output count is then the target's width. Every split is materialised into tensors once (the evaluator's contract, see
``landscape_job.datasets.builtin``), so a factory's Dataset is iterated once per worker, not per point.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from landscape_job.base import pyref
from landscape_job.base.errors import UserError
from landscape_job.spec.metrics import SPLITS

CUSTOM_DATASETS = ("tensors", "imagefolder")


def is_custom(name: str) -> bool:
    return name in CUSTOM_DATASETS or pyref.is_ref(name)


@dataclass(frozen=True)
class CustomData:
    """Every split the source holds, as raw tensors, with the class count they share."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    #: The model's output count: the classes, or for float targets the target's width (1 for (N,)).
    num_classes: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    #: False: the labels are float targets (regression), not class indices.
    classes: bool = True


def load_custom(name: str, root: str | None, options: Mapping[str, Any] | None, classes: int | None) -> CustomData:
    """Loads (once per process: validation, shape inference and evaluation share it) a custom data set."""
    return _load_cached(name, root, json.dumps(dict(options or {}), sort_keys=True, default=str), classes)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str | None, options_json: str, classes: int | None) -> CustomData:
    options = json.loads(options_json)
    mean, std = (0.0,), (1.0,)
    if name == "tensors":
        _no_options(name, options)
        splits = _load_tensor_files(_root(root, name))
    elif name == "imagefolder":
        splits, found, mean, std = _load_image_folders(_root(root, name), options)
        classes = classes or found
    else:
        splits = _load_factory(name, options)
    return assemble(name, splits, classes, mean, std)


def assemble(name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: int | None,
             mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> CustomData:
    """Splits of (inputs, labels) as one data set: its class count (or target width) checked
    against every split. The Python API passes a notebook's tensors through here too."""
    if not splits:
        raise UserError(f"data.dataset: {name} gave no splits")
    if any(labels.is_floating_point() for _, labels in splits.values()):
        return CustomData(splits=splits, num_classes=_target_width(name, splits, classes), mean=mean, std=std,
                          classes=False)
    top = max(int(labels.max()) for _, labels in splits.values() if labels.numel()) + 1
    num_classes = classes if classes is not None else top
    if num_classes < 2:
        raise UserError(f"data.dataset: {name}: every label is 0; a classifier needs at least 2 classes")
    for split, (inputs, labels) in splits.items():
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise UserError(f"data.classes: the {split} labels of {name} span {int(labels.min())}..{int(labels.max())}, "
                            f"outside 0..{num_classes - 1}; raise data.classes or fix the labels")
    return CustomData(splits=splits, num_classes=num_classes, mean=mean, std=std)


def _target_width(name: str, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: int | None) -> int:
    """Float targets (regression): every split's, of one width, which is the model's output count."""
    if classes is not None:
        raise UserError(f"data.classes: the labels of {name} are float targets (regression), not classes; remove it")
    if not all(labels.is_floating_point() for _, labels in splits.values()):
        raise UserError(f"data.dataset: {name}: some splits have integer class labels, others float targets; "
                        "give every split the same kind")
    widths = {labels.shape[1] if labels.dim() == 2 else 1 for _, labels in splits.values()}
    if len(widths) != 1:
        raise UserError(f"data.dataset: {name}: the splits' targets have different widths {sorted(widths)}")
    return widths.pop()


def _root(root: str | None, name: str) -> str:
    if not root:
        raise UserError(f"data.root: the {name} data set is read from files; set data.root to their folder, "
                        "archive or s3:// prefix")
    if not os.path.isdir(root):
        raise UserError(f"data.root: {root} is not a folder")
    return root


def _no_options(name: str, options: Mapping[str, Any]) -> None:
    if options:
        raise UserError(f"data.options.{next(iter(options))}: data set {name!r} takes no options; remove it")


def _pair(inputs: Any, labels: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks an (inputs, labels) pair: floating inputs with a sample axis, one label per input:
    integer class indices (N,), or float targets (N,) or (N, k) for regression."""
    inputs, labels = torch.as_tensor(inputs), torch.as_tensor(labels)
    if not torch.is_floating_point(inputs) or inputs.dim() < 2:
        raise UserError(f"{where}: inputs must be a floating-point array of shape (N, ...), got "
                        f"{inputs.dtype} {tuple(inputs.shape)}")
    targets = labels.dtype.is_floating_point
    if labels.dtype == torch.bool or labels.is_complex() or labels.dim() not in ((1, 2) if targets else (1,)):
        raise UserError(f"{where}: labels must be integer classes of shape (N,) or float targets of shape (N,) or "
                        f"(N, k), got {labels.dtype} {tuple(labels.shape)}")
    if len(labels) != len(inputs):
        raise UserError(f"{where}: {len(inputs)} inputs but {len(labels)} labels")
    # float64 inputs (and targets) stay float64 (an fp64 run uses them as given; any other
    # precision casts them when the evaluator places them, to the same float32 values as before).
    if targets:
        labels = labels if labels.dtype == torch.float64 else labels.to(torch.float32)
    return inputs if inputs.dtype == torch.float64 else inputs.to(torch.float32), \
        labels if targets else labels.to(torch.int64)


# -- tensors --------------------------------------------------------------------------------


def _load_tensor_files(root: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    splits = {}
    for split in SPLITS:
        for suffix, reader in ((".pt", _read_pt), (".npz", _read_npz)):
            path = os.path.join(root, split + suffix)
            if os.path.isfile(path):
                splits[split] = reader(path)
                break
    if not splits:
        raise UserError(f"data.root: no train.pt, test.pt, train.npz or test.npz under {root}")
    return splits


def _read_pt(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    where = f"data.root: {os.path.basename(path)}"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a user's file
        raise UserError(f"{where}: cannot read it with torch.load(weights_only=True) ({pyref.one_line(e)})") from None
    if isinstance(obj, Mapping) and "inputs" in obj and "labels" in obj:
        return _pair(obj["inputs"], obj["labels"], where)
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return _pair(obj[0], obj[1], where)
    raise UserError(f"{where}: expected {{'inputs': X, 'labels': y}} or (X, y), got {type(obj).__name__}")


def _read_npz(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    where = f"data.root: {os.path.basename(path)}"
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "inputs" not in archive or "labels" not in archive:
                raise UserError(f"{where}: expected arrays 'inputs' and 'labels', found {', '.join(archive.files)}")
            return _pair(torch.from_numpy(archive["inputs"].copy()), torch.from_numpy(archive["labels"].copy()), where)
    except (OSError, ValueError) as e:
        raise UserError(f"{where}: cannot read it as .npz ({pyref.one_line(e)})") from None


# -- image folders --------------------------------------------------------------------------


def _floats(options: Mapping[str, Any], key: str) -> tuple[float, ...] | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              for v in value):
        raise UserError(f"data.options.{key}: expected a list of numbers (one per channel), got {value!r}")
    return tuple(float(v) for v in value)


def _load_image_folders(root: str, options: Mapping[str, Any]):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import functional as TF

    unknown = [k for k in options if k not in ("mean", "std")]
    if unknown:
        raise UserError(f"data.options.{unknown[0]}: unknown option for imagefolder; choose from mean, std")
    mean, std = _floats(options, "mean") or (0.0,), _floats(options, "std") or (1.0,)
    if len(mean) != len(std):
        raise UserError(f"data.options.std: {len(std)} values but data.options.mean has {len(mean)}")
    splits, class_names = {}, None
    for split in SPLITS:
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            continue
        try:
            dataset = ImageFolder(folder, transform=TF.to_tensor)
        except (FileNotFoundError, OSError) as e:
            raise UserError(f"data.root: {folder}: {pyref.one_line(e)}") from None
        if class_names is not None and dataset.classes != class_names:
            raise UserError(f"data.root: {split}/ has classes {dataset.classes}, train/ has {class_names}; "
                            "give both the same class folders")
        class_names = dataset.classes
        splits[split] = _materialise(dataset, f"data.root: {folder}")
    if not splits:
        raise UserError(f"data.root: no train/ or test/ folder of class folders under {root}")
    return splits, len(class_names or []), mean, std


# -- python factories -----------------------------------------------------------------------


def _load_factory(ref: str, options: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    factory = pyref.resolve(ref, "data.dataset")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "split" in params:
        return {split: _materialise(pyref.call(ref, "data.dataset", factory, split=split, **options),
                                    f"data.dataset: {ref} (split {split})") for split in SPLITS}
    result = pyref.call(ref, "data.dataset", factory, **options)
    if isinstance(result, Mapping):
        missing = [s for s in result if s not in SPLITS]
        if missing:
            raise UserError(f"data.dataset: {ref} returned a mapping with {missing[0]!r}; use 'train' and 'test'")
        return {s: _materialise(d, f"data.dataset: {ref} ({s})") for s, d in result.items()}
    if isinstance(result, (tuple, list)) and len(result) == 2:
        if all(isinstance(part, (torch.Tensor, np.ndarray)) for part in result):
            data = _pair(result[0], result[1], f"data.dataset: {ref}")  # (inputs, labels): one data set
            return {s: data for s in SPLITS}
        return {s: _materialise(d, f"data.dataset: {ref} ({s})") for s, d in zip(SPLITS, result)}
    # One Dataset: it is every split; the spec's data.splits says which are evaluated.
    data = _materialise(result, f"data.dataset: {ref}")
    return {s: data for s in SPLITS}


#: What a factory may return, for the one-line error when it returns something else.
_FACTORY_RETURNS = ("a torch Dataset of (input, label) items, a DataLoader, a (train, test) pair, "
                    "{'train': ..., 'test': ...} or (inputs, labels) tensors")


def _batches(dataset: Any, where: str):
    """The batches to read: a DataLoader's own data set in order (a shuffling loader would give
    every worker, and ``data.subset``, other samples) with its collate_fn, or a Dataset's."""
    from torch.utils.data import DataLoader

    if isinstance(dataset, DataLoader):
        return DataLoader(dataset.dataset, batch_size=dataset.batch_size or 256, shuffle=False, num_workers=0,
                          collate_fn=dataset.collate_fn)
    if not (hasattr(dataset, "__getitem__") or hasattr(dataset, "__iter__")):
        raise UserError(f"{where}: returned {type(dataset).__name__}; expected {_FACTORY_RETURNS}")
    return DataLoader(dataset, batch_size=256, shuffle=False, num_workers=0)


def _materialise(dataset: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A Dataset's (or a DataLoader's) ``(input, label)`` items as two tensors, in the Dataset's order."""
    from torch.utils.data import TensorDataset

    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return _pair(dataset.tensors[0], dataset.tensors[1], where)
    inputs, labels = [], []
    try:
        for batch in _batches(dataset, where):
            if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                raise UserError(f"{where}: items must be (input, label) pairs")
            inputs.append(torch.as_tensor(batch[0]))
            labels.append(torch.as_tensor(batch[1]))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - user code runs inside the iteration
        raise UserError(f"{where}: reading its items raised {pyref.one_line(e)}") from None
    if not inputs:
        raise UserError(f"{where}: the data set is empty")
    return _pair(torch.cat(inputs), torch.cat(labels), where)


# -- in memory (the Python API) ---------------------------------------------------------


def split_tensors(data: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split handed over in memory: ``(inputs, labels)`` tensors or arrays, or a Dataset of
    (input, label) items, checked as a factory's are."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(part, (torch.Tensor, np.ndarray)) for part in data):
        return _pair(data[0], data[1], where)
    return _materialise(data, where)
