"""Tests for landscape_job.datasets.builtin: splits, subsets, synthetic data, local CIFAR/MNIST files.

No data set is downloaded: CIFAR-10/100 and MNIST are built in tmp_path in their real
on-disk formats, a few samples each.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape_job.datasets import builtin as data
from landscape_job.datasets import digits as digits_module
from landscape_job.datasets.digits import digits_arrays, digits_file, digits_split
from landscape_job.base.errors import UserError
from landscape_job.spec.sections import DataSpec
from landscape_job.spec.parse import parse_spec


# ---- digits -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> dict[str, data.Split]:
    return {s: data.load_split(DataSpec(dataset="digits"), s) for s in ("train", "test")}


def test_digits_shapes_sizes_dtypes(digits: dict[str, data.Split]) -> None:
    train, test = digits["train"], digits["test"]
    assert train.inputs.shape == (1438, 1, 8, 8)
    assert test.inputs.shape == (359, 1, 8, 8)
    assert train.labels.shape == (1438,) and test.labels.shape == (359,)
    for split, name in ((train, "train"), (test, "test")):
        assert split.inputs.dtype == torch.float32
        assert split.labels.dtype == torch.int64
        assert split.num_classes == 10
        assert split.name == name
        assert set(split.labels.tolist()) == set(range(10))  # stratified: every class in both
    assert data.dataset_info("digits") == ((1, 8, 8), 10)


def test_digits_train_and_test_are_disjoint_and_cover_everything() -> None:
    from sklearn.datasets import load_digits

    labels = load_digits().target
    train_idx, test_idx = digits_split(labels)
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert len(train_idx) + len(test_idx) == len(labels)
    # stratified: each class has ~20 % of its members in test
    for cls in range(10):
        share = np.sum(labels[test_idx] == cls) / np.sum(labels == cls)
        assert abs(share - 0.2) < 0.01


def test_digits_train_is_normalised_by_the_written_constants(digits: dict[str, data.Split]) -> None:
    train = digits["train"].inputs.double()
    # the constants are written to 8 digits, so the promise is tight: a rounded or
    # stale constant (e.g. 0.3058 / 0.3766) fails here.
    assert abs(float(train.mean())) < 1e-5
    assert abs(float(train.std(unbiased=False)) - 1.0) < 1e-5


def test_digits_values_match_the_raw_pixels() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train_idx, _ = digits_split(bunch.target)
    split = data.load_split(DataSpec(dataset="digits"), "train")
    raw = torch.from_numpy(bunch.images[train_idx]).float()
    expected = (raw / 16 - data.DIGITS_NORM.mean[0]) / data.DIGITS_NORM.std[0]
    torch.testing.assert_close(split.inputs[:, 0], expected)
    assert torch.equal(split.labels, torch.from_numpy(bunch.target[train_idx]))


def test_digits_are_scikit_learns_own_bit_for_bit_read_without_importing_it(monkeypatch) -> None:
    """digits_arrays parses scikit-learn's bundled file itself (importing sklearn.datasets cost each stage
    ~1.2 s of CPU): the very images and labels load_digits gives, and the same where the file is not found
    (load_digits is asked). Under the pinned scikit-learn the file is where it is looked for."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert digits_file() is not None
    for found in (digits_file(), None):
        monkeypatch.setattr(digits_module, "digits_file", lambda found=found: found)
        digits_arrays.cache_clear()
        images, labels, _, _ = digits_arrays()
        assert images.dtype == np.float32 and labels.dtype == np.int64
        assert np.array_equal(images, bunch.images.astype(np.float32)) and np.array_equal(labels, bunch.target)
    digits_arrays.cache_clear()
    loaded = subprocess.run([sys.executable, "-c", "import sys; from landscape_job.datasets.digits import digits_arrays; "
                             "digits_arrays(); print(sorted(m for m in sys.modules if m.startswith(('sklearn', 'scipy'))))"],
                            capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_digits_read_once_a_process_are_still_each_callers_own() -> None:
    """The parsed digits are kept for the process: a split handed out and changed in place changes no
    later one."""
    first = data.load_split(DataSpec(dataset="digits"), "test")
    kept = first.inputs.clone()
    first.inputs.mul_(0).add_(7)
    first.labels.fill_(3)
    again = data.load_split(DataSpec(dataset="digits"), "test")
    assert torch.equal(again.inputs, kept) and not torch.equal(again.labels, first.labels)


# ---- subset -------------------------------------------------------------------------


def test_subset_is_seeded_sorted_and_sized(digits: dict[str, data.Split]) -> None:
    a = data.load_split(DataSpec(dataset="digits", subset=100, subset_seed=3), "train")
    b = data.load_split(DataSpec(dataset="digits", subset=100, subset_seed=3), "train")
    c = data.load_split(DataSpec(dataset="digits", subset=100, subset_seed=4), "train")
    assert a.inputs.shape == (100, 1, 8, 8) and a.labels.shape == (100,)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)
    idx = data.subset_indices(1438, 100, 3)
    assert torch.equal(idx, torch.sort(idx).values)
    assert len(set(idx.tolist())) == 100
    assert torch.equal(a.inputs, digits["train"].inputs[idx])


def test_subset_of_the_whole_split_is_the_split(digits: dict[str, data.Split]) -> None:
    full = data.load_split(DataSpec(dataset="digits", subset=359), "test")
    assert torch.equal(full.inputs, digits["test"].inputs)


def test_subset_larger_than_the_split_names_the_key() -> None:
    with pytest.raises(UserError, match=r"^data\.subset: 360 is larger than the split"):
        data.load_split(DataSpec(dataset="digits", subset=360), "test")


@pytest.mark.parametrize("subset", [0, -1, 2.5, True])
def test_bad_subset_is_refused_by_the_spec(subset: object) -> None:
    """load_split trusts the DataSpec's types; the spec parser is where a bad subset is named."""
    raw = {"model": {"arch": "mlp", "checkpoint": "/m.pt"}, "data": {"dataset": "digits", "subset": subset},
           "grid": {"x": "-1:1:3"}}
    with pytest.raises(UserError, match=r"^data\.subset:"):
        parse_spec(raw, base_dir=Path("/"), check_files=False)


# ---- names and splits ------------------------------------------------------------------


def test_unknown_dataset_names_the_key_and_the_choices() -> None:
    with pytest.raises(UserError, match=r"^data\.dataset:.*cifar10"):
        data.load_split(DataSpec(dataset="imagenet"), "train")
    with pytest.raises(UserError, match=r"^data\.dataset:"):
        data.dataset_info("imagenet")


def test_unknown_split_is_refused_by_the_spec() -> None:
    raw = {"model": {"arch": "mlp", "checkpoint": "/m.pt"}, "data": {"dataset": "digits", "splits": ["val"]},
           "grid": {"x": "-1:1:3"}}
    with pytest.raises(UserError, match=r"^data\.splits:"):
        parse_spec(raw, base_dir=Path("/"), check_files=False)


def test_options_on_a_dataset_without_options_are_refused() -> None:
    with pytest.raises(UserError, match=r"^data\.options\.shape:"):
        data.dataset_info("digits", {"shape": [1, 8, 8]})


def test_dataset_info_covers_every_dataset() -> None:
    assert data.dataset_info("cifar10") == ((3, 32, 32), 10)
    assert data.dataset_info("cifar100") == ((3, 32, 32), 100)
    assert data.dataset_info("mnist") == ((1, 28, 28), 10)
    assert data.dataset_info("fashion_mnist") == ((1, 28, 28), 10)
    assert data.dataset_info("synthetic") == ((3, 32, 32), 10)
    for name in data.DATASETS:
        data.dataset_info(name)


# ---- synthetic -----------------------------------------------------------------------

SMALL = {"shape": [2, 4, 4], "classes": 4, "train_size": 600, "test_size": 300, "seed": 7}


def test_synthetic_is_deterministic_and_honours_options() -> None:
    a = data.load_split(DataSpec(dataset="synthetic", options=SMALL), "train")
    b = data.load_split(DataSpec(dataset="synthetic", options=dict(SMALL)), "train")
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert a.inputs.shape == (600, 2, 4, 4) and a.inputs.dtype == torch.float32
    assert a.labels.dtype == torch.int64 and a.num_classes == 4
    assert set(a.labels.tolist()) == {0, 1, 2, 3}
    test = data.load_split(DataSpec(dataset="synthetic", options=SMALL), "test")
    assert test.inputs.shape == (300, 2, 4, 4)
    assert data.dataset_info("synthetic", SMALL) == ((2, 4, 4), 4)


def test_synthetic_seed_changes_the_data_and_sizes_are_independent() -> None:
    a = data.load_split(DataSpec(dataset="synthetic", options=SMALL), "train")
    other_seed = data.load_split(DataSpec(dataset="synthetic", options={**SMALL, "seed": 8}), "train")
    assert not torch.equal(a.inputs, other_seed.inputs)
    # the train split does not move when only test_size changes
    other_test = data.load_split(DataSpec(dataset="synthetic", options={**SMALL, "test_size": 10}), "train")
    assert torch.equal(a.inputs, other_test.inputs)
    # train and test are different draws
    test = data.load_split(DataSpec(dataset="synthetic", options=SMALL), "test")
    assert not torch.equal(a.inputs[:300], test.inputs)


def test_synthetic_default_shape() -> None:
    split = data.load_split(DataSpec(dataset="synthetic", options={"test_size": 5}), "test")
    assert split.inputs.shape == (5, 3, 32, 32) and split.num_classes == 10


def test_synthetic_labels_are_learnable() -> None:
    from sklearn.linear_model import LogisticRegression

    train = data.load_split(DataSpec(dataset="synthetic", options=SMALL), "train")
    test = data.load_split(DataSpec(dataset="synthetic", options=SMALL), "test")
    model = LogisticRegression(max_iter=500).fit(train.inputs.flatten(1).numpy(), train.labels.numpy())
    accuracy = model.score(test.inputs.flatten(1).numpy(), test.labels.numpy())
    assert accuracy > 0.8  # chance is 0.25


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"shpae": [1]}, "shpae"),
        ({"shape": [0, 2]}, "shape"),
        ({"shape": "3x32x32"}, "shape"),
        ({"classes": 1}, "classes"),
        ({"train_size": 0}, "train_size"),
        ({"test_size": 1.5}, "test_size"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_bad_synthetic_options_name_the_key(options: dict[str, object], key: str) -> None:
    with pytest.raises(UserError, match=rf"^data\.options\.{key}:"):
        data.load_split(DataSpec(dataset="synthetic", options=options), "train")
    with pytest.raises(UserError, match=rf"^data\.options\.{key}:"):
        data.dataset_info("synthetic", options)


# ---- CIFAR from a local root ------------------------------------------------------------


def _write_pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def _fake_cifar(root: Path, *, hundred: bool = False, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A tiny CIFAR folder in the real format: pickled dicts with b'data' (N, 3072)
    uint8 rows (channel-major) and b'labels' (b'fine_labels' for CIFAR-100)."""
    rng = np.random.RandomState(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    label_key = b"fine_labels" if hundred else b"labels"
    classes = 100 if hundred else 10
    written = {}
    for name in names:
        pixels = rng.randint(0, 256, size=(per_batch, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.randint(0, classes, size=per_batch)]
        _write_pickle(folder / name, {b"batch_label": name.encode(), b"data": pixels, label_key: labels})
        written[name] = (pixels, labels)
    meta_name, meta_key = ("meta", b"fine_label_names") if hundred else ("batches.meta", b"label_names")
    _write_pickle(folder / meta_name, {meta_key: [f"c{i}".encode() for i in range(classes)]})
    return written


def test_cifar10_loads_from_a_local_root_with_the_papers_normalisation(tmp_path: Path) -> None:
    written = _fake_cifar(tmp_path)
    train = data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "train")
    test = data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "test")
    assert train.inputs.shape == (15, 3, 32, 32) and test.inputs.shape == (3, 3, 32, 32)
    assert train.inputs.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert train.num_classes == 10
    expected_labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.labels.tolist() == expected_labels
    # sample 4 is the second row of data_batch_2; channel 1, row 5, column 7 is byte
    # 1 * 1024 + 5 * 32 + 7 of that row.
    pixel = written["data_batch_2"][0][1, 1024 + 5 * 32 + 7]
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    assert float(train.inputs[4, 1, 5, 7]) == pytest.approx((pixel / 255 - mean[1]) / std[1], abs=1e-5)
    # and every value, vectorised
    raw = torch.from_numpy(written["test_batch"][0]).reshape(3, 3, 32, 32).double() / 255
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(test.inputs.double(), expected, atol=1e-5, rtol=0)


def test_cifar10_subset_from_a_local_root(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    full = data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "train")
    part = data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path), subset=5, subset_seed=1), "train")
    idx = data.subset_indices(15, 5, 1)
    assert torch.equal(part.inputs, full.inputs[idx]) and torch.equal(part.labels, full.labels[idx])


def test_cifar100_loads_fine_labels(tmp_path: Path) -> None:
    written = _fake_cifar(tmp_path, hundred=True, per_batch=4)
    train = data.load_split(DataSpec(dataset="cifar100", root=str(tmp_path)), "train")
    assert train.inputs.shape == (4, 3, 32, 32) and train.num_classes == 100
    assert train.labels.tolist() == written["train"][1]
    pixel = written["train"][0][0, 2 * 1024]
    assert float(train.inputs[0, 2, 0, 0]) == pytest.approx((pixel / 255 - 0.4409) / 0.2762, abs=1e-5)


def test_cifar_files_with_str_keys_load_too(tmp_path: Path) -> None:
    """The official files are Python 2 pickles: read with latin1 their keys are str."""
    written = _fake_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    pixels, labels = written["test_batch"]
    blob = pickle.dumps({"data": pixels, "labels": labels}, protocol=2)
    # and their arrays name numpy's pre-2.0 module, numpy.core
    assert b"numpy._core.multiarray\n_reconstruct" in blob
    path.write_bytes(blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    test = data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "test")
    assert test.labels.tolist() == labels
    raw = torch.from_numpy(pixels).reshape(3, 3, 32, 32).float() / 255
    torch.testing.assert_close(test.inputs[:, 0], (raw[:, 0] - 0.4914) / 0.2023)


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo should-never-run",))


def test_cifar_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    _write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": _Boom(), b"labels": []})
    with pytest.raises(UserError, match=r"^data\.root:.*test_batch.*refusing"):
        data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "test")


def test_cifar_with_wrong_content_names_the_file(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    _write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": np.zeros((2, 10), np.uint8)})
    with pytest.raises(UserError, match=r"^data\.root:.*test_batch"):
        data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "test")


def test_cifar_labels_out_of_range_are_refused(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    _write_pickle(
        tmp_path / "cifar-10-batches-py" / "test_batch",
        {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]},
    )
    with pytest.raises(UserError, match=r"^data\.root:.*labels"):
        data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "test")


# ---- MNIST from a local root -------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format: big-endian magic (0x08 = uint8, then the number of dims), dims, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, folder: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.RandomState(1)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    written = {}
    for prefix, count in (("train", 6), ("t10k", 4)):
        images = rng.randint(0, 256, size=(count, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=count).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (images, labels)
    return written


@pytest.mark.parametrize(
    ("name", "folder", "mean", "std"),
    [("mnist", "MNIST", 0.1307, 0.3081), ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530)],
)
def test_mnist_loads_from_local_idx_files(tmp_path: Path, name: str, folder: str, mean: float, std: float) -> None:
    written = _fake_mnist(tmp_path, folder)
    train = data.load_split(DataSpec(dataset=name, root=str(tmp_path)), "train")
    test = data.load_split(DataSpec(dataset=name, root=str(tmp_path)), "test")
    assert train.inputs.shape == (6, 1, 28, 28) and test.inputs.shape == (4, 1, 28, 28)
    assert train.inputs.dtype == torch.float32 and test.labels.dtype == torch.int64
    assert test.labels.tolist() == written["t10k"][1].tolist()
    pixel = written["train"][0][3, 10, 20]
    assert float(train.inputs[3, 0, 10, 20]) == pytest.approx((pixel / 255 - mean) / std, abs=1e-5)


def test_mnist_missing_files_name_the_expected_folder(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, "MNIST")
    with pytest.raises(UserError, match=r"^data\.root:.*FashionMNIST/raw/"):
        data.load_split(DataSpec(dataset="fashion_mnist", root=str(tmp_path)), "train")


# ---- missing root --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_missing_root_names_data_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match=r"^data\.root:"):
        data.load_split(DataSpec(dataset=name), "train")
    with pytest.raises(UserError, match=r"^data\.root:.*not a folder"):
        data.load_split(DataSpec(dataset=name, root=str(tmp_path / "nowhere")), "train")


def test_empty_root_names_the_expected_cifar_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^data\.root: no CIFAR-10 found under .*cifar-10-batches-py/"):
        data.load_split(DataSpec(dataset="cifar10", root=str(tmp_path)), "test")
    with pytest.raises(UserError, match=r"^data\.root: no CIFAR-100 found under .*cifar-100-python/"):
        data.load_split(DataSpec(dataset="cifar100", root=str(tmp_path)), "test")
