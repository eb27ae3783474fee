"""The metric registry: every per-point quantity a surface can hold, declared once.

A metric says what it is called (the surface file's dataset names: ``<split>_<key>`` for
a per-split metric, ``key`` for a per-point one), what better means (``min``, ``max`` or
neither), how to label it and which colours draw it, and how it is computed:

* a per-split metric is a *batch statistic*: from one forward pass, each batch gives a
  summed tensor; the evaluator adds them up in float64 over the split and divides by the
  number of samples N once (times ``scale``: 100 for accuracy in percent). So a metric is
  the exact mean over the split whatever the batch size, as the loss always was.
* a per-point metric comes from a probe of its own (the Hessian's extreme eigenvalues
  from the Lanczos probe), once per grid point, not per split.

The spec's ``metrics:`` items, the evaluator, the merge report, the surface reader, the
plots and the viewer all read this table, so adding a metric is one ``register`` call
(see ``ENTROPY_EXAMPLE`` in the tests). A dataset no metric declares (a file from another
tool) is described by ``describe`` as a generic field, so it is kept and drawn, not
dropped. This module imports no torch at import time: the launcher reads it to validate
a spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from landscape_job.base.registry import LiveChoices, Registry

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    #: The run's loss summed over a batch: (logits, labels) -> scalar, or (K,) for stacked logits.
    LossSum = Callable[[Tensor, Tensor], Tensor]

__all__ = ["LANGUAGE_METRICS", "use_language_metrics", "SPLITS", "BETTER", "COLOURS", "BatchStatistic", "PointProbe", "Metric", "Field", "register",
           "unregister", "registered", "get", "choices", "selected", "dataset_order", "describe", "METRIC_CHOICES"]

#: The data splits a per-split metric is computed on, in the order files and plots use.
SPLITS: tuple[str, ...] = ("train", "test")
#: What "best" means in the merge report: the smallest, the largest, or neither (a range).
BETTER = ("min", "max", None)
#: Colour kinds, which the plots and the viewer turn into colour maps and ranges: ``loss``
#: (robust top, log scale possible, the plot options apply), ``accuracy`` and ``plain``
#: (the field's own finite range).
COLOURS = ("loss", "accuracy", "plain")


@dataclass(frozen=True)
class BatchStatistic:
    """How a per-split metric comes out of the forward pass.

    ``one(logits (B, C), labels (B,), loss_sum)`` returns the batch's *sum* over its
    samples (a 0-d tensor); ``loss_sum`` is the run's loss summed over a batch. ``stacked``
    is the same for K points evaluated in one vmapped pass: logits (K, B, C) -> (K,); left
    out, ``one`` is vmapped over the K points (a statistic that calls ``loss_sum`` should
    give its own, since a ``python:`` loss need not vmap). The metric's value is
    ``scale * (sum over the split's batches) / N``, passed through ``finish`` when it has one
    (perplexity is exp of the mean loss: the mean is taken first, over the whole split).

    N is the split's count: its samples, or for a token task (causal_lm, masked_lm) its
    predicted tokens, whose logits and labels reach ``one`` flattened to (tokens, V) and
    (tokens,). So a token metric is token-weighted over the split, whatever the batches.
    """

    one: Callable[..., "Tensor"]
    stacked: Callable[..., "Tensor"] | None = None
    scale: float = 1.0
    finish: Callable[[float], float] | None = None

    def value(self, total: float, count: float) -> float:
        """The metric of a split from its summed batch statistics and its count N."""
        mean = self.scale * total / count
        return self.finish(mean) if self.finish is not None else mean

    def sum_stacked(self, logits: "Tensor", labels: "Tensor", loss_sum: "LossSum", loss_sums: "LossSum") -> "Tensor":
        """The (K,) batch sums of K stacked points; ``loss_sums`` is the stacked loss."""
        if self.stacked is not None:
            return self.stacked(logits, labels, loss_sums)
        from torch.func import vmap

        return vmap(lambda point: self.one(point, labels, loss_sum))(logits)


@dataclass(frozen=True)
class PointProbe:
    """A per-point metric's source: the ``result`` attribute of the ``probe``'s answer at a point.

    ``probe`` names the computation the evaluator runs once per point for all metrics that
    share it: ``lanczos`` (``curvature.CurvatureProbe.extremes()``).
    """

    probe: str
    result: str


@dataclass(frozen=True)
class Metric:
    """One metric: its names, its meaning for the report and the plots, and how it is computed.

    ``choice`` is the item of the spec's ``metrics:`` list that turns it on (``accuracy``
    turns on ``acc``; ``hessian`` both eigenvalues). ``label`` and ``unit`` are the
    human words (titles, colour bars, the viewer).
    """

    key: str
    choice: str
    label: str
    per_split: bool
    better: str | None = None
    unit: str = ""
    colours: str = "plain"
    statistic: BatchStatistic | None = None
    probe: PointProbe | None = None
    #: Only for class labels (accuracy): skipped, with a note, when the labels are regression targets.
    needs_classes: bool = False

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ValueError(f"metric {self.key}: better must be one of {BETTER}, got {self.better!r}")
        if self.colours not in COLOURS:
            raise ValueError(f"metric {self.key}: colours must be one of {COLOURS}, got {self.colours!r}")
        if self.per_split != (self.statistic is not None) or (self.probe is not None) == self.per_split:
            raise ValueError(f"metric {self.key}: a per-split metric has a batch statistic, "
                             f"a per-point one a probe (and not both)")

    def dataset_names(self, splits: Iterable[str] = SPLITS) -> tuple[str, ...]:
        """The surface file's datasets of this metric, for the given splits."""
        return tuple(f"{s}_{self.key}" for s in splits) if self.per_split else (self.key,)

    @property
    def with_unit(self) -> str:
        """``accuracy (%)``: the label as a colour bar or axis shows it."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


@dataclass(frozen=True)
class Field:
    """One dataset of a surface file, described: its metric (declared or generic) and split."""

    name: str
    metric: Metric
    split: str | None
    #: False for a dataset no registered metric declares (drawn generically).
    known: bool

    @property
    def quantity(self) -> str:
        """The name without its split: ``loss`` for ``train_loss``; what the viewer switches between."""
        return self.name[len(self.split) + 1:] if self.split else self.name

    @property
    def title(self) -> str:
        """``train loss``, ``Hessian λmax``: what a figure of this field is about."""
        return f"{self.split} {self.metric.label}" if self.split else self.metric.label


def _sum_loss(logits, labels, loss_sum):
    return loss_sum(logits, labels)


def _count_correct(logits, labels):
    return (logits.argmax(dim=1) == labels).sum()


def _count_correct_stacked(logits, labels, _loss_sums):
    return (logits.argmax(dim=2) == labels.unsqueeze(0)).sum(dim=1)


def _exp(mean: float) -> float:
    """exp of a mean loss; inf beyond float range (a diverged point), NaN kept."""
    try:
        return math.exp(mean)
    except OverflowError:
        return math.inf


_BUILT_IN = (
    Metric("loss", "loss", "loss", per_split=True, better="min", colours="loss",
           statistic=BatchStatistic(one=_sum_loss, stacked=_sum_loss)),
    Metric("acc", "accuracy", "accuracy", per_split=True, better="max", unit="%", colours="accuracy",
           statistic=BatchStatistic(one=lambda logits, labels, _loss_sum: _count_correct(logits, labels),
                                    stacked=_count_correct_stacked, scale=100.0), needs_classes=True),
    Metric("max_eig", "hessian", "Hessian λmax", per_split=False, probe=PointProbe("lanczos", "max_eig")),
    Metric("min_eig", "hessian", "Hessian λmin", per_split=False, probe=PointProbe("lanczos", "min_eig")),
)

def _one_way_per_choice(metric: Metric, others) -> None:
    """A spec item turns on metrics computed one way: per split, or per point."""
    if metric.choice in {m.choice for m in others if m.per_split != metric.per_split}:
        raise ValueError(f"metric {metric.key!r}: spec choice {metric.choice!r} already turns on "
                         f"metrics computed another way")


#: Every per-point metric: a ``base.registry.Registry`` (one registry type, as for a series' metrics).
METRICS: Registry[Metric] = Registry("metric", check=_one_way_per_choice, built_ins=_BUILT_IN)

register = METRICS.register
unregister = METRICS.unregister
registered = METRICS.registered
get = METRICS.get
choices = METRICS.choices
selected = METRICS.selected

#: The language-model metrics (``task: causal_lm`` / ``masked_lm``), over the split's predicted
#: tokens. Registered by ``use_language_metrics`` when a spec has a token task, so the choices
#: and file layouts of every other run are exactly what they were.
LANGUAGE_METRICS = (
    Metric("perplexity", "perplexity", "perplexity", per_split=True, better="min", colours="loss",
           statistic=BatchStatistic(one=_sum_loss, stacked=_sum_loss, finish=_exp)),
    Metric("token_acc", "token_accuracy", "token accuracy", per_split=True, better="max", unit="%",
           colours="accuracy", needs_classes=True,
           statistic=BatchStatistic(one=lambda logits, labels, _loss_sum: _count_correct(logits, labels),
                                    stacked=_count_correct_stacked, scale=100.0)),
)


def use_language_metrics() -> tuple[Metric, ...]:
    """Registers the language-model metrics (once per process); the spec parser calls it for a token task."""
    known = {m.key for m in METRICS.registered()}
    for metric in LANGUAGE_METRICS:
        if metric.key not in known:
            METRICS.register(metric)
    return LANGUAGE_METRICS


def dataset_order() -> tuple[str, ...]:
    """Every registered dataset name in the order files are read and drawn: each split's
    per-split metrics (``train_loss, train_acc, test_loss, test_acc``), then per-point ones."""
    per_split = [m for m in METRICS.registered() if m.per_split]
    per_point = [m.key for m in METRICS.registered() if not m.per_split]
    return tuple(f"{s}_{m.key}" for s in SPLITS for m in per_split) + tuple(per_point)


def describe(name: str) -> Field:
    """What a surface file's dataset ``name`` is: a registered metric's, or a generic field.

    A generic field is labelled by its name; ``<split>_<rest>`` keeps its split (so it is
    drawn beside the split's other fields) and neither end is "best".
    """
    for metric in METRICS.registered():
        if metric.per_split:
            split, _, key = name.partition("_")
            if key == metric.key and split in SPLITS:
                return Field(name, metric, split, known=True)
        elif name == metric.key:
            return Field(name, metric, None, known=True)
    split, _, rest = name.partition("_")
    if split not in SPLITS or not rest:
        split, rest = None, name
    generic = Metric(name, name, rest, per_split=False, probe=PointProbe("file", name))
    return Field(name, generic, split, known=False)


#: ``spec.METRIC_CHOICES``: the live choices, so a metric registered later is accepted too.
METRIC_CHOICES: Sequence[str] = LiveChoices(METRICS)
