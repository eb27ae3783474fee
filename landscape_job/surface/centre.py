"""What every stage builds at θ*: the centre model, the data splits, the evaluator.

The estimate and the launcher's preflight build them the same way, so a mistake in the
inputs fails there exactly as it would in a pod. The model zoo, checkpoints, token data and
the Hessian are imported where a function needs them: the Python API calls only the checks
here (``check_outputs``, ``check_tokens``), and its first call should not pay for the rest.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.base.pyref import one_line
from landscape_job.datasets.builtin import Split, dataset_info, load_split
from landscape_job.datasets.custom import is_custom
from landscape_job.models.outputs import describe_output, select_output
from landscape_job.spec.metrics import selected
from landscape_job.spec.sections import Spec
from landscape_job.surface.custom_metrics import register_python_metrics
from landscape_job.surface.directions import Directions
from landscape_job.surface.evaluator import Evaluator
from landscape_job.surface.losses import PYTHON_PREFIX, batch_loss_sum

_log = logging.getLogger(__name__)


def build_centre_model(spec: Spec) -> nn.Module:
    """The model at θ*, on the CPU, in float64 for ``precision: fp64``; ``spec`` must be localized."""
    if spec.model.hf is not None:
        return _hf_centre(spec)
    d = spec.data
    if d.dataset == "tokens" and not spec.model.arch.startswith(PYTHON_PREFIX):
        raise UserError(f"model.arch: token data needs a language model: model.hf, or python:package.module:function "
                        f"(not {spec.model.arch})")
    from landscape_job.models import build_model
    from landscape_job.models.checkpoints import load_into, load_state_dict
    from landscape_job.models.hf import select_logits

    input_shape, num_classes = dataset_info(d.dataset, d.options, root=d.root, classes=d.classes)
    model = build_model(spec.model.arch, num_classes, input_shape, spec.model.kwargs)
    if spec.compute.precision == "fp64":
        model = model.double()  # before loading: a float64 checkpoint's values are kept, not rounded to float32
    load_into(model, load_state_dict(spec.model.checkpoint, spec.model.checkpoint_key), spec.model.checkpoint)
    if spec.task != "classification" and spec.model.output is None:
        return select_logits(model).eval()
    return select_output(model, spec.model.output).eval()


def _hf_centre(spec: Spec) -> nn.Module:
    """``model.hf``: the folder's model for the task; ``model.checkpoint``, when it names other weights
    of the same model (a fine-tune's model.safetensors), loaded over it."""
    from landscape_job.models.checkpoints import load_into, load_state_dict
    from landscape_job.models.hf import load_hf, select_logits

    model = load_hf(spec.model.hf, spec.task, spec.model.trust_remote_code)
    if spec.compute.precision == "fp64":
        model = model.double()
    if spec.model.checkpoint != spec.model.hf:
        load_into(model, load_state_dict(spec.model.checkpoint, spec.model.checkpoint_key), spec.model.checkpoint)
    return select_logits(model)


def load_splits(spec: Spec) -> list[Split]:
    if spec.data.dataset == "tokens":
        from landscape_job.datasets.tokens import load_token_split

        return [load_token_split(spec.data, name, spec.task, spec.model.hf) for name in spec.data.splits]
    return [load_split(spec.data, name) for name in spec.data.splits]


def _positions(model: nn.Module) -> int | None:
    """The longest sequence the model takes (its config's n_positions / max_position_embeddings), if it says."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _vocabulary(model: nn.Module) -> int | None:
    """The ids the model embeds: its config's vocab_size, or its first Embedding's rows."""
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(size, int) and size > 0:
        return size
    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    return None if embedding is None else embedding.num_embeddings


def check_tokens(model: nn.Module, splits: list[Split], spec: Spec) -> None:
    """Token data fits the model: every id below its vocabulary, every sequence within its positions.
    One line naming the split before any forward pass (an id past the embedding is an IndexError deep
    inside the model, a context past the positions garbage or a CUDA assert)."""
    vocabulary, positions = _vocabulary(model), _positions(model)
    for split in splits:
        if split.attention_mask is None:
            continue
        where = f"data.root: the {split.name} split" if spec.data.root else f"data[{split.name!r}]"
        top = int(split.inputs.max())
        if vocabulary is not None and top >= vocabulary:
            raise UserError(f"{where} holds token id {top}, but the model's vocabulary has {vocabulary} ids "
                            f"(0..{vocabulary - 1}); tokenize with the model's own tokenizer")
        length = split.inputs.shape[1]
        if positions is not None and length > positions:
            key = "data.context" if spec.data.context is not None else where
            raise UserError(f"{key}: sequences of {length} tokens, but the model takes at most {positions} "
                            f"(its config's n_positions / max_position_embeddings); use a shorter context")


def check_outputs(model: nn.Module, split: Split, spec: Spec) -> None:
    """The model's outputs on two samples fit the data set's classes (and a python: loss takes them).

    Run by the launcher's preflight and again by every shard before its first point, so a
    data set whose labels do not fit the model is one line naming it, never a traceback
    from inside the loss.
    """
    if split.attention_mask is not None:
        return _check_token_outputs(model, split, spec)
    sample = split.inputs[:2].to(next(iter(model.parameters()), torch.empty(0)).dtype)
    try:
        with torch.no_grad():
            outputs = model(sample)
    except UserError:
        raise  # model.output naming something the model does not return
    except Exception as e:  # noqa: BLE001 - the user's model on the user's data
        raise UserError(f"model.arch: {spec.model.arch} fails on {spec.data.dataset} samples of shape "
                        f"{tuple(split.inputs.shape[1:])} ({one_line(e)})") from None
    if not isinstance(outputs, torch.Tensor):
        raise UserError(f"model.output: {spec.model.arch} returned {describe_output(outputs)}; set model.output "
                        "to the key, attribute or index of its predictions")
    custom = register_python_metrics(spec.metrics)
    if not split.classes:
        _check_regression(outputs, split, spec)
    elif outputs.ndim != 2 or outputs.shape[1] != split.num_classes:
        if is_custom(spec.data.dataset):
            raise UserError(f"data.dataset: {spec.data.dataset} has {split.num_classes} classes but model.arch "
                            f"{spec.model.arch} outputs shape {tuple(outputs.shape[1:])} per sample; set data.classes "
                            f"to the model's output count or fix the labels")
        raise UserError(f"model.arch: {spec.model.arch} outputs shape {tuple(outputs.shape[1:])} per sample, "
                        f"but {spec.data.dataset} has {split.num_classes} classes")
    labels = split.labels[:2]
    with torch.no_grad():
        if spec.loss.startswith(PYTHON_PREFIX):
            batch_loss_sum(outputs.float(), labels, spec.loss)
        for metric in custom:
            metric.statistic.one(outputs.float(), labels, None)


def _check_token_outputs(model: nn.Module, split: Split, spec: Spec) -> None:
    """Token data: the model's logits on two sequences are (2, T, vocabulary) for a token task,
    (2, classes) for sequence_classification, with the data's labels in range."""
    check_tokens(model, [split], spec)
    try:
        with torch.no_grad():
            outputs = model(input_ids=split.inputs[:2], attention_mask=split.attention_mask[:2])
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model on the user's data
        raise UserError(f"model.arch: {spec.model.hf or spec.model.arch} fails on {spec.task} sequences of "
                        f"{split.inputs.shape[1]} tokens ({one_line(e)})") from None
    if not isinstance(outputs, torch.Tensor):
        raise UserError(f"model.output: the model returned {describe_output(outputs)}; set model.output to its logits")
    shape = tuple(outputs.shape)
    if spec.task == "sequence_classification":
        if outputs.ndim != 2 or shape[1] <= int(split.labels.max()):
            raise UserError(f"data.classes: the {split.name} labels reach {int(split.labels.max())}, but the model "
                            f"gives logits of shape {shape} (num_labels in its config.json)")
    elif outputs.ndim != 3 or shape[:2] != tuple(split.inputs[:2].shape):
        raise UserError(f"model.output: task {spec.task} needs logits of shape (batch, tokens, vocabulary); the model "
                        f"gave {shape} for inputs {tuple(split.inputs[:2].shape)}")
    register_python_metrics(spec.metrics)


def _check_regression(outputs: torch.Tensor, split: Split, spec: Spec) -> None:
    """Float targets: the outputs have the targets' width, the loss is not a classifier's;
    the metrics that need classes are skipped (the evaluator leaves them out), and said so."""
    width = split.num_classes
    if outputs.ndim < 1 or outputs[0].numel() != width:
        raise UserError(f"model.arch: {spec.model.arch} outputs shape {tuple(outputs.shape[1:])} per sample, but "
                        f"{spec.data.dataset}'s float targets have {width} value(s) per sample")
    if spec.loss == "cross_entropy":
        raise UserError(f"loss: cross_entropy needs class labels, but {spec.data.dataset}'s labels are float "
                        "targets (regression); use loss: mse or python:package.module:function")
    skipped = [m.choice for m in selected(spec.metrics) if m.needs_classes]
    if skipped and all(m.needs_classes for m in selected(spec.metrics)):
        raise UserError(f"metrics: {', '.join(skipped)} needs class labels, but {spec.data.dataset}'s labels are "
                        "float targets (regression); add loss to metrics")
    if skipped:
        _log.info("metrics: %s skipped: %s's labels are float targets, not classes", ", ".join(skipped),
                  spec.data.dataset)


def build_evaluator(spec: Spec, directions: Directions, device: torch.device,
                    model: nn.Module | None = None) -> Evaluator:
    """The evaluator of a run's spec at θ*, as every evaluate pod (and the estimate) builds it.

    Inputs are fetched (or found in the cache) first, and the model's outputs are checked
    against the data set's classes, so a mismatch is one line before the first point.
    ``model``: the centre model, when the caller has built it already (the estimate builds
    it for its directions); the evaluator takes it over.
    """
    from landscape_job.spec.localize import localize
    from landscape_job.surface.curvature import hessian_split

    local = localize(spec)
    model, splits = model if model is not None else build_centre_model(local), load_splits(local)
    check_tokens(model, splits, local)
    check_outputs(model, splits[0], local)
    return Evaluator(model, directions, splits, compute=spec.compute, device=device, loss=spec.loss,
                     metrics=spec.metrics, hessian=spec.hessian, task=spec.task,
                     hessian_split=hessian_split(local) if "hessian" in spec.metrics else None)
