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

import hashlib
import json
from dataclasses import dataclass

import h5py
import numpy as np
import torch
from torch import nn

from landscape_job.checkpoints import load_into, load_state_dict
from landscape_job.errors import UserError
from landscape_job.storage import h5_attrs, h5_bytes, open_h5

_EPS = 1e-10


@dataclass
class Directions:
    dir_type: str
    names: list[str]
    x: list[torch.Tensor]
    y: list[torch.Tensor] | None = None

    @property
    def hash(self) -> str:
        """Identity of the directions, for checking that shards agree on them."""
        digest = hashlib.sha256(self.dir_type.encode())
        for group in (self.x, self.y or []):
            for tensor in group:
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            digest.update(b"|")
        return digest.hexdigest()

    def cosine(self) -> float | None:
        """Cosine similarity of x and y over all tensors; near 0 for random high-dim directions."""
        if self.y is None:
            return None
        return _dot(self.x, self.y) / (np.sqrt(_dot(self.x, self.x) * _dot(self.y, self.y)) + _EPS)


def named_tensors(model: nn.Module, dir_type: str) -> list[tuple[str, torch.Tensor]]:
    """The tensors a direction perturbs, in the order of the direction file."""
    if dir_type == "weights":
        return [(name, p.data) for name, p in model.named_parameters()]
    return list(model.state_dict().items())


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
    return [torch.randn(w.shape, generator=generator, dtype=torch.float32) for w in weights]


def target_direction(model: nn.Module, centre: list[torch.Tensor], checkpoint: str, dir_type: str) -> list[torch.Tensor]:
    """θ_target − θ_centre, read through the model so that the checkpoint must fit it."""
    state = load_state_dict(checkpoint)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        load_into(model, state, checkpoint)
        target = [t.detach().clone() for _, t in named_tensors(model, dir_type)]
    finally:
        model.load_state_dict(original)
    return [(t.float() - c.float()) if torch.is_floating_point(c) else torch.zeros(c.shape)
            for t, c in zip(target, centre)]


def orthogonalize(x: list[torch.Tensor], y: list[torch.Tensor]) -> list[torch.Tensor]:
    """Removes y's component along x (one Gram-Schmidt step), keeping y's overall norm."""
    y_norm = np.sqrt(_dot(y, y))
    coef = _dot(x, y) / (_dot(x, x) + _EPS)
    out = [(v.double() - coef * u.double()) for u, v in zip(x, y)]
    scale = y_norm / (np.sqrt(_dot(out, out)) + _EPS)
    return [(t * scale).float() for t in out]


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


def _read_group(handle: h5py.File, name: str, source: str) -> list[torch.Tensor]:
    group = handle[name]
    try:
        return [torch.from_numpy(np.asarray(group[str(i)][()], dtype=np.float32)) for i in range(len(group))]
    except KeyError:
        raise UserError(f"{source}: group {name} must hold datasets '0'..'{len(group) - 1}'") from None


def parse_direction_file(data: bytes, source: str) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, dict]:
    """Tensors and attributes of a direction file, ours or the paper's."""
    try:
        handle = open_h5(data)
    except OSError:
        raise UserError(f"{source}: not an HDF5 direction file") from None
    with handle:
        if "xdirection" not in handle:
            raise UserError(f"{source}: no 'xdirection' group; not a direction file in the paper's layout")
        x = _read_group(handle, "xdirection", source)
        y = _read_group(handle, "ydirection", source) if "ydirection" in handle else None
        attrs = h5_attrs(handle)
    return x, y, attrs


def read_direction_file(path: str, model: nn.Module, two_d: bool) -> Directions:
    """Reads a direction file and checks it against the model, naming ``directions.file`` on a mismatch."""
    try:
        data = open(path, "rb").read()
    except OSError as err:
        raise UserError(f"directions.file: cannot read {path}: {err.strerror}") from None
    x, y, attrs = parse_direction_file(data, f"directions.file {path}")
    dir_type = attrs.get("dir_type")
    n_params = len(list(model.parameters()))
    n_states = len(model.state_dict())
    if dir_type not in ("weights", "states"):
        dir_type = "weights" if len(x) == n_params else "states" if len(x) == n_states else None
    expected = {"weights": n_params, "states": n_states}.get(dir_type or "", -1)
    if len(x) != expected:
        raise UserError(f"directions.file {path}: {len(x)} tensors fit neither the model's "
                        f"{n_params} parameters nor its {n_states} state_dict entries")
    if two_d and y is None:
        raise UserError(f"directions.file {path}: no 'ydirection' group, but grid.y asks for a 2-D surface")
    named = named_tensors(model, dir_type)
    for group_name, tensors in (("xdirection", x), ("ydirection", y if two_d else None)):
        for i, ((name, ref), tensor) in enumerate(zip(named, tensors or [])):
            if tuple(tensor.shape) != tuple(ref.shape):
                raise UserError(f"directions.file {path}: {group_name}/{i} has shape {tuple(tensor.shape)} "
                                f"but the model's {name} has {tuple(ref.shape)}")
    return Directions(dir_type=dir_type, names=[n for n, _ in named], x=x, y=y if two_d else None)


def load_directions(data: bytes, source: str) -> Directions:
    """Reads a direction file this project wrote (attributes present)."""
    x, y, attrs = parse_direction_file(data, source)
    return Directions(dir_type=str(attrs["dir_type"]), names=json.loads(attrs["names"]), x=x, y=y)
