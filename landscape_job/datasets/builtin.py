"""Data sets as pairs of tensors, decoded and normalised once.

The evaluator runs a full pass over a split at every grid point (thousands of points).
The paper's code re-decodes and re-transforms every image through a DataLoader at every
point; here a worker decodes and normalises a split ONCE into ``inputs`` (float32) and
``labels`` (int64), keeps them on the device and slices batches out of them. So this
module returns plain tensors, never Datasets or DataLoaders, and never augments
(evaluation only).

Data sets:

- ``digits``: scikit-learn's 8x8 digits (ships with scikit-learn, no download). A fixed
  seeded stratified 80/20 split; see ``landscape_job.datasets.digits``.
- ``synthetic``: seeded Gaussian inputs with learnable labels, for tests and smoke runs.
- ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``: from local files under
  ``data.root`` in the layout torchvision uses (a remote root or archive is fetched and
  extracted by ``landscape_job.inputs.fetch`` first). Nothing is downloaded unless the spec
  says ``data.download: true``.
- ``tensors``, ``imagefolder``, ``python:package.module:function``: the user's own data,
  see ``landscape_job.datasets.custom``.

Determinism: everything random here (digits split, synthetic data, subsets) comes from
explicitly seeded CPU generators, so every worker on every machine sees the same tensors.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from landscape_job.datasets.custom import CUSTOM_DATASETS, is_custom, load_custom
from landscape_job.datasets.digits import digits_arrays
from landscape_job.base.errors import UserError
from landscape_job.spec.sections import DataSpec

#: The built-in data sets (shape and classes known without loading); custom_data adds
#: ``tensors``, ``imagefolder`` and ``python:`` factories.
DATASETS: tuple[str, ...] = ("digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist")


@dataclass(frozen=True)
class Split:
    """One split of a data set, ready for evaluation."""

    inputs: torch.Tensor  # float32, normalised, shape (N, *input_shape)
    labels: torch.Tensor  # int64, shape (N,); float targets (N,) or (N, k) when not ``classes``
    num_classes: int  # the model's output count: classes, or the targets' width
    name: str  # "train" or "test"
    #: False: the labels are float regression targets; metrics that need classes (accuracy) are skipped.
    classes: bool = True
    #: Token data (``datasets.tokens``): ``inputs`` are int64 token ids (N, T), this is their (N, T)
    #: attention mask (1: a real token, 0: padding), and batches reach the model as
    #: ``model(input_ids=..., attention_mask=...)``. None for every other data set.
    attention_mask: torch.Tensor | None = None


@dataclass(frozen=True)
class _Raw:
    """A split before subsetting and normalisation.

    Kept in its stored dtype (uint8 for images) so that a subset is taken before the
    4x larger float copy is made.
    """

    inputs: torch.Tensor  # (N, *input_shape), any dtype
    labels: torch.Tensor  # int64 (N,)


@dataclass(frozen=True)
class _Norm:
    """``(x / scale - mean[c]) / std[c]`` per channel c."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


# --------------------------------------------------------------------------------------
# Normalisation constants
# --------------------------------------------------------------------------------------

#: CIFAR-10: the paper's code (and the training code of its released checkpoints) uses
#: std (0.2023, 0.1994, 0.2010), not the true per-channel std (0.2470, 0.2435, 0.2616).
#: We use the paper's values so that the paper's checkpoints see exactly the inputs they
#: were trained on; the loss values then match the paper's surfaces.
CIFAR10_NORM = _Norm(255.0, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
#: CIFAR-100: per-channel mean/std of the training set.
CIFAR100_NORM = _Norm(255.0, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_NORM = _Norm(255.0, (0.1307,), (0.3081,))
FASHION_MNIST_NORM = _Norm(255.0, (0.2860,), (0.3530,))
#: digits: pixels are 0..16, divided by 16, then normalised by the mean and the
#: (population, ddof=0) std over all pixels of the TRAIN split of ``digits.digits_split()``,
#: computed once in float64 and written here so no worker recomputes (or disagrees on)
#: them. tests/datasets/test_data.py checks the train split comes out at mean 0, std 1.
DIGITS_NORM = _Norm(16.0, (0.30577476,), (0.37656184,))

#: synthetic defaults; keys of ``data.options`` for ``synthetic``.
SYNTHETIC_DEFAULTS: Mapping[str, Any] = {
    "shape": (3, 32, 32),
    "classes": 10,
    "train_size": 2000,
    "test_size": 500,
    "seed": 0,
}

_SHAPES: Mapping[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
}


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def dataset_info(name: str, options: Mapping[str, Any] | None = None, root: str | None = None,
                 classes: int | None = None) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)``, without loading the data for the built-in sets.

    Used at validation time, so that a spec whose model does not fit the data set is
    rejected before anything is submitted. A custom data set (``tensors``, ``imagefolder``,
    ``python:``) has no fixed shape, so it is loaded (once per process) to learn it.
    """
    _check_name(name)
    if is_custom(name):
        custom = load_custom(name, root, options, classes)
        inputs, _ = next(iter(custom.splits.values()))
        return tuple(inputs.shape[1:]), custom.num_classes
    if name == "synthetic":
        opts = _synthetic_options(options)
        return opts["shape"], opts["classes"]
    _check_no_options(name, options)
    return _SHAPES[name]


def load_split(data: DataSpec, split: str) -> Split:
    """Loads one split of the spec's data set as normalised tensors (see the module docstring for why).

    ``data.subset``: a seeded random subset of that many samples, in increasing index
    order so that the order is stable; the same ``data.subset_seed`` gives the same subset
    on every machine. The spec has checked the keys' types, the split's name and the
    subset's size; what is checked here is what only the files can tell (an unknown data
    set, a subset larger than the split, inputs that do not fit the data set's shape).
    """
    input_shape, num_classes = dataset_info(data.dataset, data.options, data.root, data.classes)
    raw, norm = _load_raw(data.dataset, split, data.root, data.options, data.classes, data.download)
    if data.subset is not None:
        raw = _take(raw, subset_indices(len(raw.labels), data.subset, data.subset_seed))
    inputs = _normalise(raw.inputs, norm)
    classes = not raw.labels.is_floating_point()  # float labels: regression targets, as custom_data gave them
    labels = raw.labels.to(torch.int64) if classes else raw.labels
    _check_loaded(data.dataset, split, inputs, labels, input_shape, num_classes)
    return Split(inputs=inputs, labels=labels, num_classes=num_classes, name=split, classes=classes)


def subset_indices(total: int, subset: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded random subset of ``range(total)``.

    A ``torch.Generator`` on the CPU, so the subset does not depend on the device or
    on global random state.
    """
    if subset > total:
        raise UserError(f"data.subset: {subset} is larger than the split ({total} samples); lower it or drop it")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    chosen = torch.randperm(total, generator=generator)[:subset]
    return torch.sort(chosen).values


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    """Unknown data set -> one line naming ``data.dataset`` and the choices."""
    if name not in DATASETS and not is_custom(name):
        raise UserError(f"data.dataset: unknown data set {name!r}; choose from "
                        f"{', '.join(DATASETS + CUSTOM_DATASETS)} or python:package.module:function")


def _check_no_options(name: str, options: Mapping[str, Any] | None) -> None:
    """Only ``synthetic`` takes options; anything else is a typo the user should see."""
    if options:
        key = next(iter(options))
        raise UserError(f"data.options.{key}: data set {name!r} takes no options; remove it")


def _int_option(options: Mapping[str, Any], key: str, minimum: int) -> int:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"data.options.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _synthetic_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merges ``options`` over the defaults, checking every key and type."""
    given = dict(options or {})
    for key in given:
        if key not in SYNTHETIC_DEFAULTS:
            raise UserError(
                f"data.options.{key}: unknown option for synthetic; choose from {', '.join(SYNTHETIC_DEFAULTS)}"
            )
    merged = {**SYNTHETIC_DEFAULTS, **given}
    shape = merged["shape"]
    if (
        not isinstance(shape, (list, tuple))
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)
    ):
        raise UserError(f"data.options.shape: expected a non-empty list of positive integers, got {shape!r}")
    return {
        "shape": tuple(shape),
        "classes": _int_option(merged, "classes", 2),
        "train_size": _int_option(merged, "train_size", 1),
        "test_size": _int_option(merged, "test_size", 1),
        "seed": _int_option(merged, "seed", 0),
    }


def _check_loaded(
    name: str,
    split: str,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> None:
    """Catches a truncated or foreign file that parsed but is not the data set."""
    if tuple(inputs.shape[1:]) != input_shape or labels.shape[:1] != (inputs.shape[0],):
        raise UserError(
            f"data.root: the {name} {split} files hold inputs of shape {tuple(inputs.shape[1:])} and "
            f"{labels.shape[0]} labels for {inputs.shape[0]} inputs (expected {input_shape}); replace the files"
        )
    if not labels.is_floating_point() and labels.numel() and (int(labels.min()) < 0
                                                              or int(labels.max()) >= num_classes):
        raise UserError(
            f"data.root: the {name} {split} labels leave 0..{num_classes - 1}; the files are not {name}, replace them"
        )


# --------------------------------------------------------------------------------------
# Shared tensor steps
# --------------------------------------------------------------------------------------


def _take(raw: _Raw, indices: torch.Tensor) -> _Raw:
    return _Raw(inputs=raw.inputs[indices], labels=raw.labels[indices])


def _normalise(inputs: torch.Tensor, norm: _Norm) -> torch.Tensor:
    """Per-channel ``(x / scale - mean) / std`` in float32 (float64 inputs: in float64), in one vectorised pass."""
    channels = inputs.shape[1]
    if len(norm.mean) not in (1, channels):
        raise AssertionError(f"normalisation has {len(norm.mean)} channels, data has {channels}")
    view = (1, -1) + (1,) * (inputs.dim() - 2)
    # A user's float64 tensors stay float64, so an fp64 run sees them unrounded.
    dtype = torch.float64 if inputs.dtype == torch.float64 else torch.float32
    mean = torch.tensor(norm.mean, dtype=dtype).view(view)
    std = torch.tensor(norm.std, dtype=dtype).view(view)
    # One float copy (never ``inputs`` itself), then in place: a CIFAR train split is
    # 600 MB as float32, so a second temporary copy would matter.
    out = inputs.to(dtype, copy=True)
    return out.div_(norm.scale).sub_(mean).div_(std).contiguous()


# --------------------------------------------------------------------------------------
# Loaders: each returns the raw split and its normalisation
# --------------------------------------------------------------------------------------


def _load_raw(name: str, split: str, root: str | None, options: Mapping[str, Any] | None,
              classes: int | None = None, download: bool = False) -> tuple[_Raw, _Norm]:
    if is_custom(name):
        custom = load_custom(name, root, options, classes)
        if split not in custom.splits:
            raise UserError(f"data.splits: the {name} data set has no {split} split (it has "
                            f"{', '.join(custom.splits)}); drop {split} from data.splits")
        inputs, labels = custom.splits[split]
        return _Raw(inputs, labels), _Norm(1.0, custom.mean, custom.std)
    if name == "digits":
        return _load_digits(split), DIGITS_NORM
    if name == "synthetic":
        return _load_synthetic(split, _synthetic_options(options)), _Norm(1.0, (0.0,), (1.0,))
    loader, norm = _FILE_LOADERS[name]
    if download:
        _download(name, root)
    return loader(_check_root(root), split), norm


def _load_digits(split: str) -> _Raw:
    """scikit-learn's digits: bundled with the package, so no root and no download."""
    images, labels, train_idx, test_idx = digits_arrays()
    idx = train_idx if split == "train" else test_idx
    return _Raw(torch.from_numpy(images[idx]).unsqueeze(1), torch.from_numpy(labels[idx]))


def _load_synthetic(split: str, opts: Mapping[str, Any]) -> _Raw:
    """Gaussian inputs; label = argmax of a fixed seeded linear map of the input.

    The labels are a deterministic function of the inputs, so a linear classifier can
    learn them (pure-noise labels would make every landscape flat and uninformative).
    Each of (map, train, test) has its own generator seeded ``4 * seed + stream``, so
    the train split does not change when ``test_size`` does, and vice versa.
    """
    seed = opts["seed"]
    dim = math.prod(opts["shape"])
    weight = torch.randn(dim, opts["classes"], generator=_generator(4 * seed))
    size = opts["train_size"] if split == "train" else opts["test_size"]
    stream = 1 if split == "train" else 2
    inputs = torch.randn((size, *opts["shape"]), generator=_generator(4 * seed + stream))
    labels = (inputs.reshape(size, dim) @ weight).argmax(dim=1)
    return _Raw(inputs, labels)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


# ---- files under data.root ------------------------------------------------------------


def _download(name: str, root: str | None) -> None:
    """``data.download: true``: torchvision fetches the official files (md5-checked) if they are absent."""
    import torchvision.datasets as tvd

    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST,
           "fashion_mnist": tvd.FashionMNIST}[name]
    if root is None:
        raise UserError("data.root: data.download needs a folder to download into")
    os.makedirs(root, exist_ok=True)
    try:
        for train in (True, False):
            cls(root, train=train, download=True)
    except Exception as e:  # noqa: BLE001 - network and integrity failures are the environment's, not a bug
        raise UserError(f"data.download: torchvision could not download {name} into {root} "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); does this machine reach the "
                        "internet? Otherwise upload the data set and set data.root") from None


def _check_root(root: str | None) -> str:
    if root is None or str(root) == "":
        raise UserError("data.root: this data set is read from local files; set data.root to their folder")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise UserError(f"data.root: {root} is not a folder; point data.root at the folder holding the data set")
    return root


def _missing(folder: str, files: Sequence[str]) -> list[str]:
    return [f for f in files if not os.path.isfile(os.path.join(folder, f))]


# CIFAR --------------------------------------------------------------------------------
#
# The CIFAR files are pickles. We read them ourselves rather than through
# torchvision.datasets.CIFAR10 because (1) torchvision pins the md5 of the official
# archive, so a locally re-packed copy fails its check, and (2) with that check
# bypassed torchvision would call plain ``pickle.load`` on whatever sits under
# data.root, and we never load an untrusted pickle. ``_SafeUnpickler`` accepts only
# what a CIFAR batch holds (dicts, lists, strings, numbers, numpy uint8 arrays), so
# integrity is checked by file presence, shape and label range instead of md5. File
# names come from torchvision's classes so the two layouts cannot drift apart.


_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else executable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles from Python 3 spell bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith(("numpy.core.", "numpy._core.")):
            # numpy 2 renamed numpy.core to numpy._core; the official CIFAR files use
            # the old name, new pickles the new one. Map to whichever this numpy has.
            module = _NUMPY_CORE + "." + module.split(".", 2)[2]
        return super().find_class(module, name)


def _read_cifar_batch(path: str, label_key: str) -> tuple[np.ndarray, list[int]]:
    """Reads one batch file: ``data`` (N, 3072) uint8 and ``labels``/``fine_labels``."""
    try:
        with open(path, "rb") as handle:
            entry = _SafeUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise UserError(f"data.root: {path} is not a CIFAR batch file ({exc}); replace it") from None
    if not isinstance(entry, dict):
        raise UserError(f"data.root: {path} is not a CIFAR batch file (not a dict); replace it")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data, labels = entry.get("data"), entry.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"data.root: {path} has no uint8 'data' array of shape (N, 3072); replace it")
    if labels is None or len(labels) != len(data):
        raise UserError(f"data.root: {path} has no {label_key!r} list matching its data; replace it")
    return data, list(labels)


def _load_cifar(root: str, split: str, *, hundred: bool) -> _Raw:
    from torchvision.datasets import CIFAR10, CIFAR100  # lazily: only for the file names

    spec = CIFAR100 if hundred else CIFAR10
    folder = os.path.join(root, spec.base_folder)
    names = [f for f, _ in spec.train_list] if split == "train" else [f for f, _ in spec.test_list]
    missing = _missing(folder, [f for f, _ in spec.train_list + spec.test_list])
    if missing:
        pretty = "CIFAR-100" if hundred else "CIFAR-10"
        raise UserError(
            f"data.root: no {pretty} found under {root} (expected {spec.base_folder}/ holding "
            f"{', '.join(missing)}); download it once with torchvision or point data.root at it"
        )
    label_key = "fine_labels" if hundred else "labels"
    batches = [_read_cifar_batch(os.path.join(folder, f), label_key) for f in names]
    data = np.concatenate([d for d, _ in batches]).reshape(-1, 3, 32, 32)  # rows are CHW already
    labels = np.asarray([label for _, ls in batches for label in ls], dtype=np.int64)
    return _Raw(torch.from_numpy(data), torch.from_numpy(labels))


# MNIST --------------------------------------------------------------------------------
#
# torchvision's MNIST reads the raw idx files (no pickle) and only checks that they
# exist, so locally built copies load as they are; we check presence first to give the
# user a message naming the expected files.


def _load_mnist(root: str, split: str, *, fashion: bool) -> _Raw:
    from torchvision.datasets import MNIST, FashionMNIST

    cls = FashionMNIST if fashion else MNIST
    folder = os.path.join(root, cls.__name__, "raw")
    prefix = "train" if split == "train" else "t10k"
    files = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    missing = _missing(folder, files)
    if missing:
        pretty = "Fashion-MNIST" if fashion else "MNIST"
        raise UserError(
            f"data.root: no {pretty} found under {root} (expected {cls.__name__}/raw/ holding "
            f"{', '.join(missing)}, unpacked); download it once with torchvision or point data.root at it"
        )
    try:
        dataset = cls(root, train=(split == "train"), download=False)
    except (RuntimeError, ValueError, OSError) as exc:
        raise UserError(f"data.root: cannot read {cls.__name__} idx files under {folder} ({exc}); replace them") from None
    return _Raw(dataset.data.unsqueeze(1), dataset.targets.to(torch.int64))


_FILE_LOADERS: Mapping[str, tuple[Callable[[str, str], _Raw], _Norm]] = {
    "cifar10": (lambda root, split: _load_cifar(root, split, hundred=False), CIFAR10_NORM),
    "cifar100": (lambda root, split: _load_cifar(root, split, hundred=True), CIFAR100_NORM),
    "mnist": (lambda root, split: _load_mnist(root, split, fashion=False), MNIST_NORM),
    "fashion_mnist": (lambda root, split: _load_mnist(root, split, fashion=True), FASHION_MNIST_NORM),
}
