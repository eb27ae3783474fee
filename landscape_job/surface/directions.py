"""Directions in parameter space, and the paper's direction-file layout.

A direction is a list of tensors, one per tensor of the model in ``parameters()`` order
(dir_type ``weights``) or ``state_dict()`` order (dir_type ``states``). Integer entries of
a state_dict (BatchNorm's ``num_batches_tracked``) are never perturbed: their direction
is stored as zeros so that the file's indices still line up with ``state_dict()``.

The file layout is the one the paper's tools read: HDF5 groups ``xdirection`` and
``ydirection``, each with datasets ``'0'`` ... ``'n-1'``. We add attributes (dir_type,
tensor names, seed, normalisation, hash) that those tools ignore.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from landscape_job.base.errors import UserError, shown
from landscape_job.storage import h5_attrs, h5_bytes, open_h5

if TYPE_CHECKING:  # imported where a direction file is read: building directions in memory (the API) needs no h5py
    import h5py

_EPS = 1e-10


@dataclass
class Directions:
    dir_type: str
    names: list[str]
    x: list[torch.Tensor]
    y: list[torch.Tensor] | None = None
    #: Seeded directions (``surface.seeded``): the hash taken over the values as they were generated.
    known_hash: str | None = None

    @property
    def hash(self) -> str:
        """Identity of the directions, for checking that shards agree on them."""
        if self.known_hash is not None:
            return self.known_hash
        digest = hashlib.sha256(self.dir_type.encode())
        # float32 bytes, as always; an fp64 run's directions (any tensor float64) by their float64 bytes.
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in [*self.x, *(self.y or [])]) else torch.float32
        for group in (self.x, self.y or []):
            for tensor in group:
                digest.update(tensor.detach().to("cpu", dtype).contiguous().numpy().tobytes())
            digest.update(b"|")
        return digest.hexdigest()

    def cosine(self) -> float | None:
        """Cosine similarity of x and y over all tensors; near 0 for random high-dim directions."""
        if self.y is None:
            return None
        return _dot(self.x, self.y) / (np.sqrt(_dot(self.x, self.x) * _dot(self.y, self.y)) + _EPS)


def named_tensors(model: nn.Module, dir_type: str) -> list[tuple[str, torch.Tensor]]:
    """The tensors a direction perturbs, in the order of the direction file.

    A tied tensor (a language model's output layer that is its input embedding) is one
    tensor under two ``state_dict`` names: it is listed once, under its first name, as
    ``named_parameters`` lists it; listed twice, a point would move it twice."""
    if dir_type == "weights":
        return [(name, p.data) for name, p in model.named_parameters()]
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = set()
    named = []
    for name, tensor in model.state_dict().items():
        if tensor.numel():
            where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                     tuple(tensor.stride()))
            if where in seen:
                continue
            seen.add(where)
        named.append((name, tensor))
    return named


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum(torch.sum(u.double() * v.double()) for u, v in zip(a, b)))


def normalize_tensor(d: torch.Tensor, w: torch.Tensor, norm: str) -> torch.Tensor:
    """Scales one direction tensor (dim > 1) against its weights, in place.

    ``filter``: every filter d[k] (a slice on dim 0) gets the norm of θ[k], which makes
    surfaces of networks with different weight scales comparable (Li et al., Sec. 4).
    """
    if norm == "none":
        return d
    if norm in ("filter", "dfilter"):
        d_norm = d.double().flatten(1).norm(dim=1)
        target = w.double().flatten(1).norm(dim=1) if norm == "filter" else torch.ones_like(d_norm)
        scale = (target / (d_norm + _EPS)).to(d.dtype)
        return d.mul_(scale.view(-1, *([1] * (d.dim() - 1))))
    if norm == "layer":
        return d.mul_(float(w.double().norm() / (d.double().norm() + _EPS)))
    if norm == "dlayer":
        return d.div_(float(d.double().norm() + _EPS))
    if norm == "weight":
        return d.mul_(w)
    raise ValueError(f"unknown norm {norm!r}")


def normalize_direction(direction: list[torch.Tensor], weights: list[torch.Tensor], norm: str,
                        ignore: str, small_from_weights: bool) -> list[torch.Tensor]:
    """Applies the normalisation to every tensor; dim <= 1 tensors follow ``ignore``.

    For random directions a dim <= 1 tensor (bias, BN) copies the weights when not
    ignored, as the paper's code does; for a difference of checkpoints it keeps the
    difference.
    """
    for d, w in zip(direction, weights):
        if not torch.is_floating_point(w):
            d.zero_()
        elif d.dim() <= 1:
            if ignore == "biasbn":
                d.zero_()
            elif small_from_weights:
                d.copy_(w)
        else:
            normalize_tensor(d, w, norm)
    return direction


def random_direction(weights: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Gaussian tensors shaped like ``weights``, drawn on the CPU so a seed means the same on every machine."""
    return [torch.randn(w.shape, generator=generator, dtype=torch.float32).to(_wide(w)) for w in weights]


def _wide(w: torch.Tensor) -> torch.dtype:
    """float64 beside a float64 weight (precision fp64), else float32: directions never round an fp64 run."""
    return torch.float64 if w.dtype == torch.float64 else torch.float32


def target_direction(model: nn.Module, centre: list[torch.Tensor], checkpoint: str, dir_type: str) -> list[torch.Tensor]:
    """θ_target − θ_centre, streamed tensor by tensor: the checkpoint is memory-mapped (a zip-format
    torch file; a safetensors file is read whole), checked against the model on the meta device
    (the same one-line refusal as loading it), and each difference made from one of its tensors,
    so no second model is ever built or copied (task vectors of a large base model and its fine-tunes)."""
    from landscape_job.models.checkpoints import load_into, load_state_dict, strip_prefixes

    state = load_state_dict(checkpoint, mmap=True)
    with warnings.catch_warnings():  # loading into meta tensors is a no-op, as meant here
        warnings.simplefilter("ignore")
        load_into(_skeleton(model), state, checkpoint)  # keys and shapes: the values stay where they are
    stripped, _ = strip_prefixes(state)
    names = [n for n, _ in named_tensors(model, dir_type)]
    return [(stripped[n].to(_wide(c)) - c.to(_wide(c))) if torch.is_floating_point(c) and n in stripped
            else torch.zeros(c.shape, dtype=_wide(c) if torch.is_floating_point(c) else torch.float32)
            for n, c in zip(names, centre)]


def _skeleton(model: nn.Module) -> nn.Module:
    """A copy of the model on the meta device, made without copying a single value."""
    memo: dict[int, object] = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
                               for p in model.parameters()}
    memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
    return copy.deepcopy(model, memo)


def orthogonalize(x: list[torch.Tensor], y: list[torch.Tensor]) -> list[torch.Tensor]:
    """Removes y's component along x (one Gram-Schmidt step), keeping y's overall norm."""
    y_norm = np.sqrt(_dot(y, y))
    coef = _dot(x, y) / (_dot(x, x) + _EPS)
    out = [(v.double() - coef * u.double()) for u, v in zip(x, y)]
    scale = y_norm / (np.sqrt(_dot(out, out)) + _EPS)
    return [(t * scale).to(_wide(u)) for t, u in zip(out, x)]


def direction_file_bytes(directions: Directions, attrs: dict[str, object]) -> bytes:
    """The paper's layout, plus our provenance attributes."""

    def write(handle: h5py.File) -> None:
        for group_name, tensors in (("xdirection", directions.x), ("ydirection", directions.y)):
            if tensors is None:
                continue
            group = handle.create_group(group_name)
            for i, tensor in enumerate(tensors):
                group.create_dataset(str(i), data=tensor.detach().cpu().numpy())
        handle.attrs["dir_type"] = directions.dir_type
        handle.attrs["names"] = json.dumps(directions.names)
        handle.attrs["direction_hash"] = directions.hash
        cosine = directions.cosine()
        if cosine is not None:
            handle.attrs["cosine_xy"] = cosine
        for key, value in attrs.items():
            handle.attrs[key] = value

    return h5_bytes(write)


#: The most values a direction file may declare: ~10**10 parameters is beyond any model this runs.
MAX_DIRECTION_VALUES = 1 << 33
#: The element kinds a direction dataset may hold: floating point, or integers (zeros for integer buffers).
_NUMERIC_KINDS = "fiu"


Shapes = list[tuple[str, tuple[int, ...]]]


def _read_group(handle: h5py.File, name: str, source: str, dtype: torch.dtype = torch.float32,
                shapes: Shapes | None = None) -> list[torch.Tensor]:
    """Group ``name``'s datasets '0'..'n-1' as ``dtype`` tensors; anything else is one line naming it.

    A link (external, soft) is refused unfollowed, a non-numeric dataset (strings,
    compounds) before reading, a declared shape unlike ``shapes`` (the model's) or of
    impossible size before its data is allocated, and NaN or inf after reading.
    """
    import h5py

    group = handle.get(name, getlink=True)
    if not isinstance(group, h5py.HardLink) or not isinstance(handle[name], h5py.Group):
        raise UserError(f"{source}: {name} must be a group of datasets '0'..'n-1', not a link or a dataset")
    group = handle[name]
    count = len(group)
    if shapes is not None and count != len(shapes):
        return []  # the caller names the count mismatch with the model's own numbers
    numpy_dtype = np.float64 if dtype == torch.float64 else np.float32
    tensors, total = [], 0
    for i in range(count):
        where = f"{source}: {name}/{i}"
        link = group.get(str(i), getlink=True)
        if link is None:
            raise UserError(f"{source}: group {name} must hold datasets '0'..'{count - 1}'")
        if not isinstance(link, h5py.HardLink):
            raise UserError(f"{where} is a {type(link).__name__}; a direction file must hold its data itself")
        dataset = group[str(i)]
        if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind not in _NUMERIC_KINDS:
            kind = "a group" if not isinstance(dataset, h5py.Dataset) else f"of dtype {dataset.dtype}"
            raise UserError(f"{where} is {kind}; expected numbers (float32 or float64)")
        shape = tuple(int(n) for n in dataset.shape)
        if shapes is not None and shape != shapes[i][1]:
            raise UserError(f"{where} has shape {shape} but the model's {shapes[i][0]} has {shapes[i][1]}")
        total += int(np.prod(shape, dtype=object))
        if total > MAX_DIRECTION_VALUES:
            raise UserError(f"{where}: the file declares more than {MAX_DIRECTION_VALUES:,} values; not a direction file")
        values = np.asarray(dataset[()], dtype=numpy_dtype)
        if not np.isfinite(values).all():
            raise UserError(f"{where} holds NaN or infinite values; a direction must be finite")
        tensors.append(torch.from_numpy(values))
    return tensors


def parse_direction_file(data: bytes, source: str, dtype: torch.dtype | None = None,
                         shapes: Shapes | None = None,
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, dict]:
    """Tensors and attributes of a direction file, ours or the paper's, read as ``dtype``
    (default: as stored, float64 for a file an fp64 run wrote, float32 for any other).

    ``shapes``: the model's tensors (name, shape), checked before any data is read.
    """
    dtype = dtype or _stored_dtype(data)
    try:
        handle = open_h5(data)
    except OSError:
        raise UserError(f"{source}: not an HDF5 direction file") from None
    try:
        with handle:
            if "xdirection" not in handle:
                raise UserError(f"{source}: no 'xdirection' group; not a direction file in the paper's layout")
            x = _read_group(handle, "xdirection", source, dtype, shapes)
            y = _read_group(handle, "ydirection", source, dtype, shapes) if "ydirection" in handle else None
            attrs = h5_attrs(handle)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as err:  # h5py's words for a damaged file
        raise UserError(f"{source}: damaged HDF5 file ({shown(str(err), 120)})") from None
    return x, y, attrs


def read_direction_file(path: str, model: nn.Module, two_d: bool) -> Directions:
    """Reads a direction file and checks it against the model, naming ``directions.file`` on a mismatch.

    Read in the model's floating dtype: float64 for ``precision: fp64`` (the file's values
    as written), float32 otherwise.
    """
    try:
        data = open(path, "rb").read()
    except OSError as err:
        raise UserError(f"directions.file: cannot read {path}: {err.strerror}") from None
    import h5py

    source = f"directions.file {path}"
    dtype = _floating_dtype(model)
    try:
        handle = open_h5(data)
    except OSError:
        raise UserError(f"{source}: not an HDF5 direction file") from None
    with handle:
        attrs = h5_attrs(handle) if "xdirection" in handle else {}
        count = len(handle["xdirection"]) if isinstance(handle.get("xdirection"), h5py.Group) else -1
    dir_type = attrs.get("dir_type") if isinstance(attrs.get("dir_type"), str) else None
    n_params = len(list(model.parameters()))
    n_states = len(model.state_dict())
    if dir_type not in ("weights", "states"):
        dir_type = "weights" if count == n_params else "states" if count == n_states else None
    expected = {"weights": n_params, "states": n_states}.get(dir_type or "", -1)
    if count >= 0 and count != expected:
        raise UserError(f"directions.file {path}: {count} tensors fit neither the model's "
                        f"{n_params} parameters nor its {n_states} state_dict entries")
    named = named_tensors(model, dir_type or "weights")
    x, y, attrs = parse_direction_file(data, source, dtype, [(n, tuple(t.shape)) for n, t in named])
    if two_d and y is None:
        raise UserError(f"directions.file {path}: no 'ydirection' group, but grid.y asks for a 2-D surface")
    if two_d and y is not None and len(y) != len(x):
        raise UserError(f"directions.file {path}: ydirection holds {len(y)} tensors, xdirection {len(x)}")
    return Directions(dir_type=dir_type or "weights", names=[n for n, _ in named], x=x, y=y if two_d else None)


def _floating_dtype(model: nn.Module) -> torch.dtype:
    """float64 for a model in float64 (precision fp64), float32 for any other."""
    return next((t.dtype for t in model.state_dict().values() if t.dtype == torch.float64), torch.float32)


def load_directions(data: bytes, source: str) -> Directions:
    """Reads a direction file this project wrote (attributes present), in the dtype it was written:
    float64 for an fp64 run, float32 for every other."""
    x, y, attrs = parse_direction_file(data, source)
    try:
        names = json.loads(attrs["names"])
        return Directions(dir_type=str(attrs["dir_type"]), names=names, x=x, y=y)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source}: not a direction file this project wrote (no dir_type or names)") from None


def _stored_dtype(data: bytes) -> torch.dtype:
    """float64 when any x tensor is stored as float64 (an fp64 run wrote it), else float32."""
    import h5py

    try:
        with open_h5(data) as handle:
            group = handle.get("xdirection")
            wide = isinstance(group, h5py.Group) and any(
                isinstance(group.get(k, getlink=True), h5py.HardLink) and isinstance(group[k], h5py.Dataset)
                and group[k].dtype == np.float64 for k in group)
            return torch.float64 if wide else torch.float32
    except (OSError, KeyError, ValueError):
        return torch.float32  # parse_direction_file names what is wrong
