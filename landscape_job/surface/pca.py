"""PCA directions from a training trajectory, and the trajectory's path in their plane.

Li et al. (Sec. 7) plot the optimiser's path by taking the two leading principal
directions of the matrix whose rows are θ_e − θ_final over the saved epochs and
projecting every θ_e onto them. Their code gets the details subtly wrong; here:

* The rows are differences from θ_final, not centred on their mean: the plotted plane
  passes through θ_final (the surface is θ_final + a·x + b·y), and the uncentred SVD gives
  the plane through θ_final that fits the trajectory best in least squares. (sklearn's
  PCA, which the paper's code uses, centres the rows and so fits a plane through the
  trajectory's mean, which is not the plane that is plotted.)
* Each difference is formed in float64 from the float32 weights and rounded once to
  float32; the Gram matrix and the directions are accumulated in float64 and stored as
  float32. The stored float32 tensors are the ones the projection uses and the ones the
  evaluator perturbs with, so a checkpoint lying in the plane projects onto the very
  point of the surface that is its loss.
* Coordinates solve the 2x2 normal equations with the Gram matrix of the stored
  directions, so they stay exact when the user filter-normalises the directions (which
  makes them non-orthogonal) or when the two directions are not unit vectors.

The SVD of the m x n row matrix is done through its m x m Gram matrix, in column
chunks: m is the number of checkpoints (tens), n the number of weights (millions), so
memory stays at one float32 copy of the trajectory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.spec.sections import DirectionsSpec
from landscape_job.surface.directions import Directions, named_tensors, normalize_direction, orthogonalize

#: Columns per float64 block when forming the Gram matrix and the directions.
_CHUNK = 1 << 20
#: A second principal value below this fraction of the first counts as absent (collinear path).
_RANK_RTOL = 1e-10


@dataclass(frozen=True)
class Trajectory:
    """The trajectory's coordinates in the direction basis, through θ_final (the final model last)."""

    names: list[str]
    x: list[float]
    y: list[float] | None
    #: ‖θ_e − θ_final − (x·d_x + y·d_y)‖ / ‖θ_e − θ_final‖ over the directions' tensors: 0 in the plane.
    residual: list[float]

    def to_dict(self) -> dict[str, object]:
        return {"names": self.names, "x": self.x, "y": self.y, "residual": self.residual}


@dataclass(frozen=True)
class PcaPlane:
    directions: Directions
    #: Fraction of Σ‖θ_e − θ_final‖² along PC1 and PC2 (of the tensors that take part).
    explained_variance: list[float]
    trajectory: Trajectory


def _participates(name_tensor: tuple[str, torch.Tensor], ignore: str) -> bool:
    """Tensors whose differences enter the PCA: ``ignore: biasbn`` leaves out dim <= 1."""
    _, t = name_tensor
    return torch.is_floating_point(t) and (t.dim() > 1 or ignore != "biasbn")


def _flat_difference(model: nn.Module, path: str, key: str, centre: list[torch.Tensor],
                     mask: list[bool], dir_type: str) -> np.ndarray:
    """θ_e − θ_final over the participating tensors, exact in float64 and rounded once to float32."""
    probe = copy.deepcopy(model)
    from landscape_job.models.checkpoints import load_into, load_state_dict  # the model zoo: only for a PCA

    load_into(probe, load_state_dict(path), f"{key} {path}")
    parts = [(t.detach().double() - c.double()).flatten()
             for (_, t), c, keep in zip(named_tensors(probe, dir_type), centre, mask) if keep]
    return torch.cat(parts).to(torch.float32).numpy()


def _gram(rows: np.ndarray) -> np.ndarray:
    gram = np.zeros((rows.shape[0], rows.shape[0]))
    for start in range(0, rows.shape[1], _CHUNK):
        block = rows[:, start:start + _CHUNK].astype(np.float64)
        gram += block @ block.T
    return gram


def principal_directions(rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k leading right singular vectors of ``rows`` (float32, k x n) and all squared singular values.

    Signs are fixed so that each component's largest coefficient over the rows is
    positive: the same trajectory gives the same directions on every machine.
    """
    eigvals, eigvecs = np.linalg.eigh(_gram(rows))
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = np.clip(eigvals[order], 0.0, None), eigvecs[:, order]
    out = np.empty((k, rows.shape[1]), dtype=np.float32)
    for c in range(k):
        v = eigvecs[:, c]
        if v[np.argmax(np.abs(v))] < 0:
            eigvecs[:, c] = v = -v
    scale = np.sqrt(eigvals[:k])
    scale = np.where(scale > 0, scale, 1.0)  # a missing component is refused by the caller
    for start in range(0, rows.shape[1], _CHUNK):
        block = rows[:, start:start + _CHUNK].astype(np.float64)
        out[:, start:start + _CHUNK] = (eigvecs[:, :k].T @ block) / scale[:, None]
    return out, eigvals


def project(points: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coordinates of each row of ``points`` in the span of ``basis``'s rows.

    Solved with the basis's Gram matrix, so the basis need not be orthonormal; returns
    the coordinates (m x k) and each point's residual relative to its norm.
    """
    b64 = basis.astype(np.float64)
    p64 = points.astype(np.float64)
    coords = np.linalg.solve(b64 @ b64.T, b64 @ p64.T).T
    norms = np.linalg.norm(p64, axis=1)
    residual = np.linalg.norm(p64 - coords @ b64, axis=1)
    return coords, np.divide(residual, norms, out=np.zeros_like(norms), where=norms > 0)


def trajectory_points(spec: DirectionsSpec, final: str | None) -> list[str | None]:
    """The checkpoints drawn as the path: the trajectory, then θ_final (None: the model as it is)
    unless it is already listed."""
    points: list[str | None] = list(spec.trajectory)
    return points if final is not None and final in points else [*points, final]


def build_pca(spec: DirectionsSpec, model: nn.Module, two_d: bool, final: str | None = None) -> PcaPlane:
    """PCA directions at the model's current weights, θ_final (the file ``final``, when known)."""
    named = named_tensors(model, spec.dir_type)
    centre = [t.detach().cpu().clone() for _, t in named]
    mask = [_participates(nt, spec.ignore) for nt in named]
    points = trajectory_points(spec, final)
    width = sum(c.numel() for c, keep in zip(centre, mask) if keep)
    rows = np.stack([
        np.zeros(width, dtype=np.float32) if path is None or path == final
        else _flat_difference(model, path, _key(spec, path), centre, mask, spec.dir_type)
        for path in points])
    k = 2 if two_d else 1
    pcs, eigvals = principal_directions(rows, k)
    total = float(eigvals.sum())
    if total <= 0 or len(eigvals) < k or eigvals[k - 1] <= _RANK_RTOL * eigvals[0]:
        raise UserError(f"directions.trajectory: the checkpoints' differences from model.checkpoint span "
                        f"{'no' if total <= 0 else 'only one'} direction, but a {k}-D plot needs {k}; "
                        f"use checkpoints from more of the training run")
    ratios = [float(v / total) for v in eigvals[:2]] + [0.0] * max(0, 2 - len(eigvals))

    groups = [_unflatten(pc, centre, mask) for pc in pcs]
    groups = [normalize_direction(g, centre, spec.norm, spec.ignore, small_from_weights=False) for g in groups]
    if len(groups) == 2 and spec.orthogonalize:
        groups[1] = orthogonalize(groups[0], groups[1])
    directions = Directions(dir_type=spec.dir_type, names=[n for n, _ in named], x=groups[0],
                            y=groups[1] if two_d else None)
    basis = np.stack([_flatten(g, mask) for g in groups])
    coords, residual = project(rows, basis)
    trajectory = Trajectory(names=[Path(p).name if p is not None else "model.checkpoint" for p in points], x=[float(v) for v in coords[:, 0]],
                            y=[float(v) for v in coords[:, 1]] if two_d else None,
                            residual=[float(r) for r in residual])
    return PcaPlane(directions=directions, explained_variance=ratios, trajectory=trajectory)


def _key(spec: DirectionsSpec, path: str) -> str:
    return f"directions.trajectory[{spec.trajectory.index(path)}]"


def _unflatten(flat: np.ndarray, centre: list[torch.Tensor], mask: list[bool]) -> list[torch.Tensor]:
    out, start = [], 0
    for c, keep in zip(centre, mask):
        if keep:
            out.append(torch.from_numpy(flat[start:start + c.numel()].copy()).view(c.shape))
            start += c.numel()
        else:
            out.append(torch.zeros(c.shape, dtype=torch.float32))
    return out


def _flatten(group: list[torch.Tensor], mask: list[bool]) -> np.ndarray:
    return torch.cat([t.detach().to(torch.float32).flatten() for t, keep in zip(group, mask) if keep]).numpy()
