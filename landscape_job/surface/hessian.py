"""Curvature of a loss: Hessian-vector products, Lanczos extremes, Hutchinson trace.

Everything here works on a generic closure over a list of parameter tensors, so the
maths can be checked against a pure quadratic whose spectrum is known, and the model
code (``landscape_job.surface.curvature``) only has to supply the closure.

Choices made against the paper's code, which got these subtly wrong:

* The operator is the Hessian of the MEAN loss over the data set. Batches contribute
  Hessian-vector products of their loss SUMS, and the total is divided by the number of
  samples once: the result does not depend on the batch size or the number of batches
  (the paper summed per-batch *mean* Hessians, i.e. scaled by the number of batches).
* Both extremes are algebraic: ``max_eig`` is the largest eigenvalue, ``min_eig`` the
  smallest (most negative) one, both from the same Lanczos run. No spectral shift, no
  second eigensolve, no placeholder value that a MIN-reduction could pick up.
* Lanczos keeps its whole basis and reorthogonalises every new vector against it (twice,
  which is enough in floating point), so no spurious copies of converged Ritz values
  appear. It stops when the residual bound of both extreme Ritz pairs,
  ``|β_k · s_k,i|`` (equal to ``‖H y_i − θ_i y_i‖``), is at most ``tolerance`` times the
  largest Ritz magnitude. For a symmetric matrix that residual bounds the eigenvalue
  error, so ``tolerance`` is a relative accuracy guarantee, not a heuristic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

#: A closure giving the loss terms whose sum, divided by the normaliser, is the loss.
LossTerms = Callable[[], Iterable[torch.Tensor]]
#: v ↦ H v on flat vectors.
MatVec = Callable[[torch.Tensor], torch.Tensor]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for t in like:
        out.append(vector[start:start + t.numel()].view_as(t))
        start += t.numel()
    return out


class HessianOperator:
    """The Hessian of ``sum(loss_terms()) / normaliser`` with respect to ``params``, as v ↦ Hv.

    Each term is differentiated twice on its own and its graph freed at once, so memory
    stays that of one batch's double backward however large the data set is.
    """

    def __init__(self, params: Sequence[torch.Tensor], loss_terms: LossTerms, normaliser: float = 1.0):
        if not params:
            raise ValueError("the Hessian needs at least one parameter tensor")
        self.params = list(params)
        self.loss_terms = loss_terms
        self.normaliser = float(normaliser)
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.products = 0

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        v = unflatten(vector.to(self.device, self.dtype), self.params)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            for term in self.loss_terms():
                grads = torch.autograd.grad(term, self.params, create_graph=True, allow_unused=True)
                dot = sum(((g * u).sum() for g, u in zip(grads, v) if g is not None),
                          torch.zeros((), dtype=self.dtype, device=self.device))
                if not dot.requires_grad:  # the loss is (at most) linear in every parameter
                    continue
                hv = torch.autograd.grad(dot, self.params, allow_unused=True)
                total += flatten([torch.zeros_like(p) if h is None else h for h, p in zip(hv, self.params)])
        self.products += 1
        return total / self.normaliser


@dataclass(frozen=True)
class LanczosResult:
    """The extreme eigenpairs found, and how far Lanczos had to go for them."""

    max_eig: float
    min_eig: float
    #: The ``top_k`` largest eigenvalues, descending, and their unit eigenvectors (flat).
    top_values: tuple[float, ...]
    top_vectors: tuple[torch.Tensor, ...]
    iterations: int
    converged: bool
    #: Residual bounds ‖Hy − θy‖ of the largest and the smallest Ritz pair.
    residual_max: float
    residual_min: float

    @staticmethod
    def non_finite(iterations: int) -> "LanczosResult":
        """Where the loss itself is inf/NaN (a divergent grid point): kept as NaN, not raised."""
        nan = float("nan")
        return LanczosResult(nan, nan, (), (), iterations, False, nan, nan)


def _start_vector(dim: int, seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Gaussian, from a seeded CPU generator: the same start (and so the same answer) on every machine."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(dim, generator=generator, dtype=torch.float64)
    return (v / v.norm()).to(device, dtype)


def _reorthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Removes ``w``'s components along the basis rows, twice ("twice is enough")."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def lanczos(matvec: MatVec, dim: int, *, iterations: int = 100, tolerance: float = 1e-3, seed: int = 0,
            top_k: int = 0, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> LanczosResult:
    """The largest and the smallest eigenvalue of a symmetric operator, and ``top_k`` top eigenvectors.

    Stops after ``iterations`` steps (capped at ``dim``: then T is the whole operator) or
    once the residual bounds of the extreme Ritz pairs (and of the ``top_k`` largest)
    are within ``tolerance`` times the largest Ritz magnitude.
    """
    if iterations < 1 or dim < 1:
        raise ValueError("lanczos needs iterations >= 1 and dim >= 1")
    device = torch.device(device)
    steps = min(iterations, dim)
    basis = torch.zeros(steps, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    q = _start_vector(dim, seed, dtype, device)
    converged = False
    values = vectors = None
    beta = 0.0
    for k in range(steps):
        basis[k] = q
        w = matvec(q)
        if not bool(torch.isfinite(w).all()):
            return LanczosResult.non_finite(k + 1)
        alpha = float(q @ w)
        alphas.append(alpha)
        w = _reorthogonalise(w, basis[:k + 1])
        beta = float(w.norm())
        values, vectors = np.linalg.eigh(_tridiagonal(alphas, betas))
        scale = max(abs(values[0]), abs(values[-1]), np.finfo(np.float64).tiny)
        residuals = np.abs(beta * vectors[-1, :])
        watched = [0, *range(len(values) - 1, max(len(values) - 1 - max(top_k, 1), -1), -1)]
        # β ≈ 0: the Krylov space is invariant, every Ritz pair is exact.
        invariant = beta <= 1e-12 * scale
        if invariant or k + 1 == dim or all(residuals[i] <= tolerance * scale for i in watched):
            converged = True
            break
        betas.append(beta)
        q = w / beta
    assert values is not None and vectors is not None
    n = len(values)
    residuals = np.abs(beta * vectors[-1, :])
    if n == dim or beta <= 1e-12 * max(abs(values[0]), abs(values[-1]), np.finfo(np.float64).tiny):
        residuals = np.zeros_like(residuals)
    top = list(range(n - 1, max(n - 1 - top_k, -1), -1))
    ritz = basis[:n].T @ torch.from_numpy(vectors[:, top]).to(device, dtype) if top else None
    top_vectors = tuple((ritz[:, c] / ritz[:, c].norm()) for c in range(len(top))) if ritz is not None else ()
    return LanczosResult(max_eig=float(values[-1]), min_eig=float(values[0]),
                         top_values=tuple(float(values[i]) for i in top), top_vectors=top_vectors,
                         iterations=n, converged=converged, residual_max=float(residuals[-1]),
                         residual_min=float(residuals[0]))


def _tridiagonal(alphas: list[float], betas: list[float]) -> np.ndarray:
    n = len(alphas)
    t = np.diag(np.asarray(alphas, dtype=np.float64))
    if n > 1:
        off = np.asarray(betas[:n - 1], dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return t


@dataclass(frozen=True)
class TraceEstimate:
    trace: float
    #: Standard error of the mean over the probes (NaN with one probe).
    stderr: float
    samples: int


def hutchinson_trace(matvec: MatVec, dim: int, *, samples: int, seed: int = 0,
                     dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> TraceEstimate:
    """tr(H) ≈ mean of zᵀHz over Rademacher probes z, drawn from a seeded CPU generator.

    Unbiased for any symmetric H; the variance is 2·Σ_{i≠j} H_ij², so it converges fast
    for a diagonally dominant Hessian and slowly otherwise (``stderr`` says how well).
    """
    if samples < 1:
        raise ValueError("hutchinson_trace needs at least one probe")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    values = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8) * 2 - 1).to(device, dtype)
        values.append(float(z @ matvec(z)))
    mean = float(np.mean(values))
    stderr = float(np.std(values, ddof=1) / math.sqrt(samples)) if samples > 1 else float("nan")
    return TraceEstimate(trace=mean, stderr=stderr, samples=samples)


# --------------------------------------------------------------------------- the spectral density


@dataclass(frozen=True)
class SpectralDensity:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature (Ghorbani, Krishnan and Xiao, ICML 2019).

    For each unit probe v, m Lanczos steps from v give a tridiagonal T whose eigenvalues
    θ_j (the nodes) and squared first eigenvector entries w_j (the weights, summing to 1)
    are the m-point Gauss quadrature of v's spectral measure Σᵢ (uᵢ·v)² δ(λ − λᵢ):
    Σ_j w_j θ_j^k = vᵀHᵏv exactly for k ≤ 2m − 1. With v = z/√n for a Rademacher z
    (as PyHessian draws them), E[vvᵀ] = I/n, so E[vᵀHᵏv] = tr(Hᵏ)/n, so the mean over probes estimates the density φ(λ) = (1/n) Σᵢ δ(λ − λᵢ).
    A row holds one probe's nodes and weights, padded with NaN nodes and zero weights
    where Lanczos found an invariant subspace before m steps (then its nodes are exact).
    """

    nodes: np.ndarray  # (probes, steps)
    weights: np.ndarray  # (probes, steps), each row sums to 1
    dim: int

    def moment(self, k: int) -> float:
        """The estimate of tr(Hᵏ)/n: the probes' mean of Σ_j w_j θ_j^k (NaN when no probe was finite)."""
        rows = self.weights.sum(axis=1) > 0
        if not rows.any():
            return float("nan")
        powered = np.where(self.weights > 0, np.nan_to_num(self.nodes) ** k, 0.0)
        return float(np.mean(np.sum(self.weights * powered, axis=1)[rows]))

    @property
    def trace(self) -> float:
        """n times the first moment: a Hutchinson estimate with the same probes, for free."""
        return self.dim * self.moment(1)


def lanczos_tridiagonal(matvec: MatVec, start: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of ``steps`` Lanczos steps from the unit vector ``start``, fully reorthogonalised;
    shorter when the Krylov space is invariant (β ≈ 0) or when ``steps`` reaches the dimension."""
    dim = start.numel()
    steps = min(steps, dim)
    basis = torch.zeros(steps, dim, dtype=start.dtype, device=start.device)
    alphas: list[float] = []
    betas: list[float] = []
    q = start
    for k in range(steps):
        basis[k] = q
        w = matvec(q)
        if not bool(torch.isfinite(w).all()):
            return np.full(1, np.nan), np.zeros(0)
        alphas.append(float(q @ w))
        w = _reorthogonalise(w, basis[:k + 1])
        beta = float(w.norm())
        if k + 1 == steps or beta <= 1e-12 * max(abs(a) for a in alphas + [1e-300]):
            break
        betas.append(beta)
        q = w / beta
    return np.asarray(alphas), np.asarray(betas[:len(alphas) - 1])


def density_probes(dim: int, count: int, seed: int) -> list[torch.Tensor]:
    """The SLQ probes: Rademacher vectors over √dim (unit, float64), from a seeded CPU generator."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return [(torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8) * 2 - 1).to(torch.float64)
            / math.sqrt(dim) for _ in range(count)]


def spectral_density(matvec: MatVec, dim: int, *, steps: int, probes: int, seed: int = 0,
                     dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> SpectralDensity:
    """SLQ: ``probes`` Rademacher probes (normalised; seeded CPU generator), ``steps`` Lanczos steps each."""
    if steps < 1 or probes < 1:
        raise ValueError("spectral_density needs steps >= 1 and probes >= 1")
    width = min(steps, dim)
    nodes = np.full((probes, width), np.nan)
    weights = np.zeros((probes, width))
    for p, v in enumerate(density_probes(dim, probes, seed)):
        alphas, betas = lanczos_tridiagonal(matvec, v.to(device, dtype), width)
        if not np.all(np.isfinite(alphas)):
            continue  # a non-finite loss: this probe's row stays NaN with no weight
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        values, vectors = np.linalg.eigh(t)
        nodes[p, :len(values)] = values
        weights[p, :len(values)] = vectors[0] ** 2
    return SpectralDensity(nodes=nodes, weights=weights, dim=dim)
