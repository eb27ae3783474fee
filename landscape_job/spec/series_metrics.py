"""The per-checkpoint metric registry of a series run: every quantity a ``series.h5`` row can hold, declared once.

A series evaluates each checkpoint of a training run once (``spec_series``); what it
measures is chosen by the spec's ``series.metrics`` items, each of which turns on the
metrics registered with that ``choice``. A metric declares its dataset name in
``series.h5``, its label and unit for plots and the viewer, and its *shape* per row:

* ``scalar``: one value per checkpoint, shape (n,);
* ``split``: one per data split, datasets ``<split>_<key>``, shape (n,) each;
* ``top_k``: one per top Hessian eigen-direction, shape (n, k), descending eigenvalue;
* ``layers``: one per parameter tensor, shape (n, L); the names are the file's
  ``layer_names`` attribute;
* ``density``: the stochastic Lanczos quadrature's nodes or weights, shape (n, P·m) for
  P = ``hessian.density_probes`` probes of m = ``hessian.density_steps`` steps, probe
  after probe (``surface.hessian.SpectralDensity``; a padded node is 0 with weight 0).

Which computation fills it is ``source``: the probe in ``series.probe`` that produces
it (``evaluation``, ``lanczos``, ``gradient``, ``noise``, ``density``); several metrics share one
probe run, so the Hessian is diagonalised once per checkpoint for all of its metrics.
Or ``own``: the metric carries its computation, ``compute``, as a per-point metric carries
its batch statistic, so adding one is this one declaration and nothing in ``series/``:
``compute(checkpoint)`` is given ``series.probe.Checkpoint`` (the model at the checkpoint's
weights, the splits, the Hessian's samples, the spec's sections; for a ``split`` metric
the split, called once per split) and returns a float, or for a vector shape its values
in column order. ``needs`` names other choices a metric cannot do without (the gradient's
components need the eigenvectors). This module imports no torch: the spec and the
launcher read it (a ``compute`` imports what it uses when it is called).

In a shard file a row's values are flat columns: a scalar is ``key``, a vector's entry
i is ``key[i]`` (``column_name``); ``series.py`` stacks them back into (n, width).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from landscape_job.base.registry import LiveChoices, Registry

__all__ = ["SHAPES", "SOURCES", "SeriesMetric", "register", "unregister", "registered", "get", "choices", "selected",
           "column_name", "split_column", "SERIES_CHOICES", "DEFAULT_SERIES_METRICS", "needs_of"]

#: What one checkpoint's value of a metric is: see the module's docstring.
SHAPES = ("scalar", "split", "top_k", "layers", "density")
#: The computations of ``series.probe``, each run at most once per checkpoint; ``own``: the metric's ``compute``.
SOURCES = ("evaluation", "lanczos", "gradient", "noise", "density", "own")
#: The data splits of a ``split`` metric.
SPLITS = ("train", "test")


@dataclass(frozen=True)
class SeriesMetric:
    """One per-checkpoint metric: its dataset name, words, shape, source, and the choices it needs."""

    key: str
    choice: str
    label: str
    shape: str
    source: str
    unit: str = ""
    needs: tuple[str, ...] = ()
    description: str = ""
    #: ``source="own"`` only: ``series.probe.Checkpoint`` -> a float (scalar, split) or the row's values.
    #: Typed loosely: the record is series', a floor above the spec.
    compute: Callable[[Any], float | Sequence[float]] | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"series metric {self.key}: shape must be one of {SHAPES}, got {self.shape!r}")
        if self.source not in SOURCES:
            raise ValueError(f"series metric {self.key}: source must be one of {SOURCES}, got {self.source!r}")
        if (self.source == "own") != (self.compute is not None):
            raise ValueError(f"series metric {self.key}: a metric with its own compute has source 'own' "
                             f"(and only it)")

    def dataset_names(self, splits: tuple[str, ...] = SPLITS) -> tuple[str, ...]:
        """Its datasets in ``series.h5``: ``train_loss``, ``test_loss`` for a split metric, else ``key``."""
        return tuple(f"{s}_{self.key}" for s in splits) if self.shape == "split" else (self.key,)


_BUILT_IN = (
    SeriesMetric("loss", "loss", "loss", "split", "evaluation",
                 description="mean loss over the split (the run's loss, eval mode)"),
    SeriesMetric("acc", "accuracy", "accuracy", "split", "evaluation", unit="%",
                 description="accuracy over the split, in percent"),
    SeriesMetric("top_eigenvalues", "hessian", "Hessian top-k eigenvalues", "top_k", "lanczos",
                 description="the k largest eigenvalues of the Hessian of the mean loss, descending (Lanczos, "
                             "full reorthogonalisation, exact Hessian-vector products)"),
    SeriesMetric("min_eig", "hessian", "Hessian λmin", "scalar", "lanczos",
                 description="the smallest (most negative) eigenvalue of the same Hessian"),
    SeriesMetric("lanczos_iterations", "hessian", "Lanczos steps", "scalar", "lanczos",
                 description="Hessian-vector products the eigensolve took"),
    SeriesMetric("lanczos_converged", "hessian", "Lanczos converged", "scalar", "lanczos",
                 description="1 when every watched Ritz pair met hessian.tolerance, else 0"),
    SeriesMetric("grad_norm", "gradient", "‖∇L‖", "scalar", "gradient",
                 description="norm of the full-batch gradient of the mean loss (the Hessian's samples and tensors)"),
    SeriesMetric("grad_components", "gradient", "cᵢ = ⟨∇L, uᵢ⟩", "top_k", "gradient", needs=("hessian",),
                 description="the gradient's component on each top-k eigenvector uᵢ (sign fixed so uᵢ's largest "
                             "entry is positive)"),
    SeriesMetric("top_k_share", "gradient", "share of ‖∇L‖² in the top-k subspace", "scalar", "gradient",
                 needs=("hessian",), description="Σᵢ cᵢ² / ‖∇L‖²"),
    SeriesMetric("predicted_delta", "gradient", "predicted ΔLᵢ", "top_k", "gradient", needs=("hessian",),
                 description="each direction's quadratic contribution to a GD step's loss change at η: "
                             "cᵢ²(η²λᵢ/2 − η)"),
    SeriesMetric("tail_index", "noise", "gradient-noise tail index α", "scalar", "noise",
                 description="α of minibatch gradient − full gradient over all noise coordinates "
                             "(Mohammadi et al. 2014, Cor. 2.4); 2 for Gaussian noise"),
    SeriesMetric("noise_norm", "noise", "‖noise‖", "scalar", "noise",
                 description="mean over the minibatches of ‖minibatch gradient − full gradient‖"),
    SeriesMetric("tail_index_layers", "noise", "α per layer", "layers", "noise",
                 description="α of each parameter tensor's noise coordinates (series.noise_per_layer)"),
    SeriesMetric("density_nodes", "density", "SLQ nodes", "density", "density",
                 description="the Hessian's eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. "
                             "2019): each probe's Gauss nodes (hessian.density_steps per probe)"),
    SeriesMetric("density_weights", "density", "SLQ weights", "density", "density",
                 description="each node's weight (a probe's weights sum to 1)"),
    SeriesMetric("trace", "density", "tr(H)", "scalar", "density",
                 description="the trace of the Hessian, n times the density's mean (the probes' Hutchinson "
                             "estimate)"),
)

#: Every per-checkpoint metric: the same ``base.registry.Registry`` type as the per-point metrics.
SERIES_METRICS: Registry[SeriesMetric] = Registry("series metric", built_ins=_BUILT_IN)

register = SERIES_METRICS.register
unregister = SERIES_METRICS.unregister
registered = SERIES_METRICS.registered
get = SERIES_METRICS.get
choices = SERIES_METRICS.choices


def needs_of(choice: str) -> tuple[str, ...]:
    """The other choices that ``choice``'s metrics need to be computed in full."""
    return tuple(dict.fromkeys(n for m in SERIES_METRICS.registered() if m.choice == choice for n in m.needs))


def selected(chosen: tuple[str, ...] | list[str]) -> tuple[SeriesMetric, ...]:
    """The metrics the chosen items turn on, less those whose needs are not chosen too."""
    wanted = set(chosen)
    return tuple(m for m in SERIES_METRICS.selected(wanted) if wanted.issuperset(m.needs))


def column_name(key: str, index: int | None = None) -> str:
    """A shard column: ``key`` for a scalar, ``key[i]`` for entry i of a vector."""
    return key if index is None else f"{key}[{index}]"


_COLUMN = re.compile(r"^(?P<key>[A-Za-z0-9_]+)\[(?P<index>\d+)\]$")


def split_column(name: str) -> tuple[str, int | None]:
    """``key[3]`` -> (key, 3); ``key`` -> (key, None)."""
    match = _COLUMN.match(name)
    return (match["key"], int(match["index"])) if match else (name, None)


#: The ``series.metrics`` items, live: a metric registered after this module was imported (a plugin,
#: a test) is accepted by the parser too.
SERIES_CHOICES: Sequence[str] = LiveChoices(SERIES_METRICS)
DEFAULT_SERIES_METRICS: tuple[str, ...] = ("loss", "accuracy", "hessian", "gradient")
