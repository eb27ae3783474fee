"""The spec's ``model`` section: which network, its θ*, and where in its outputs and checkpoint to look.

Apart from ``spec.py`` (the other sections) because models arrive in many shapes: a
Hugging Face ``ModelOutput`` or a dict with auxiliary heads (``model.output`` names the
logits), a checkpoint that keeps the weights under some entry (``model.checkpoint_key``).
Keys added after the first release are written by ``model_out`` only when set, so the
hash of an existing spec does not change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from landscape_job.base.errors import UserError, shown
from landscape_job.base.schema import Section, default_of, key
from landscape_job.spec.inputs import INPUT_SCHEMA, input_out, read_input, resolve_input

#: ``model.output``: a key (dict), an attribute (dataclass, ModelOutput) or an index (tuple).
OUTPUT_SCHEMA = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}


@dataclass(frozen=True)
class ModelSpec:
    arch: str = key(description="zoo name (mlp, cnn, resnet56, ...) | torchvision:<name> | "
                                "python:package.module:function", computed="with model.hf: its config.json")
    checkpoint: str = key(kind=(str, dict), json=INPUT_SCHEMA,
                          computed="with series: its last checkpoint; with model.hf: its weights",
                          description="θ*: a path (.pt, .pth, .safetensors), s3://bucket/key, or "
                                      "{url: https://..., sha256: ...}")
    kwargs: dict[str, Any] = key(default_factory=dict, kind=dict,
                                 description="passed to the model's constructor / factory")
    #: None: the model returns its outputs as one tensor.
    output: str | int | None = key(None, kind=(str, int), json=OUTPUT_SCHEMA,
                                   description="which of a dict / tuple / dataclass output is the prediction: "
                                               "a key, an attribute (logits) or an index (0)")
    #: None: a bare state_dict, or the first of state_dict, model_state_dict, model.
    checkpoint_key: str | None = key(None, description="the checkpoint's entry holding the weights (ema, "
                                                       "a.b for nested; default: found)")
    #: A Hugging Face model folder (config.json + safetensors), local or an s3:// / https:// prefix; never the hub.
    hf: str | None = key(None, kind=(str, dict), json=INPUT_SCHEMA,
                         description="a Hugging Face model folder or s3:// prefix (config.json + safetensors); "
                                     "replaces arch; checkpoint defaults to its weights")
    #: Let transformers run the Python code a model folder ships (its config's auto_map). Off: refused.
    trust_remote_code: bool = key(False, kind=bool, description="model.hf: run the folder's own modelling code "
                                                                "(refused unless true)")


#: The keys ``model_out`` writes only when they differ from their defaults.
_LATER_KEYS = ("output", "checkpoint_key", "hf", "trust_remote_code")
#: ``model.arch`` of a Hugging Face model: its class comes from the folder's config.json and the task.
HF_ARCH = "hf"


def parse_model(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str]) -> ModelSpec:
    if s.has("hf"):
        return _parse_hf(s, base_dir, check_files, pins)
    arch = s.read(ModelSpec, "arch")
    checkpoint = read_input(s, "checkpoint", base_dir, check_files, pins)
    kwargs, output, checkpoint_key, trust = s.read_all(
        ModelSpec, ("kwargs", "output", "checkpoint_key", "trust_remote_code")).values()
    s.finish()
    if trust:
        raise UserError("model.trust_remote_code: only for model.hf (a folder's own modelling code); remove it")
    if isinstance(output, bool) or output == "":
        raise UserError(f"model.output: expected a key, an attribute name or an index, got {shown(output)}")
    if checkpoint_key == "":
        raise UserError("model.checkpoint_key: expected the name of an entry of the checkpoint, got ''")
    return ModelSpec(arch=arch, checkpoint=checkpoint, kwargs=kwargs, output=output, checkpoint_key=checkpoint_key)


def _parse_hf(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str]) -> ModelSpec:
    """``model.hf``: the architecture is the folder's config.json (with the task's Auto class),
    θ* its weights unless ``model.checkpoint`` names other weights of the same model."""
    hf = resolve_input(s.get("hf", (str, dict)), "model.hf", base_dir, check_files, pins, folder=True)
    arch = s.get("arch", str, HF_ARCH)
    if arch != HF_ARCH:
        raise UserError(f"model.arch: the model is model.hf's config.json; remove model.arch ({shown(arch)})")
    checkpoint = read_input(s, "checkpoint", base_dir, check_files, pins) if s.has("checkpoint") else hf
    kwargs, output, checkpoint_key, trust = s.read_all(
        ModelSpec, ("kwargs", "output", "checkpoint_key", "trust_remote_code")).values()
    s.finish()
    if kwargs:
        raise UserError(f"model.kwargs.{next(iter(kwargs))}: a Hugging Face model takes its settings from "
                        "config.json; remove model.kwargs")
    if output is not None:
        raise UserError("model.output: a Hugging Face model's predictions are its logits; remove model.output")
    if checkpoint_key is not None and checkpoint == hf:
        raise UserError("model.checkpoint_key: only for a model.checkpoint file; model.hf's weights are read whole")
    return ModelSpec(arch=HF_ARCH, checkpoint=checkpoint, kwargs={}, output=None, checkpoint_key=checkpoint_key,
                     hf=hf, trust_remote_code=trust)


def model_out(model: ModelSpec, pins: dict[str, str]) -> dict[str, Any]:
    """The section as the normalised spec writes it."""
    out = asdict(model)
    out["checkpoint"] = input_out(model.checkpoint, pins)
    if model.hf is not None:
        out["hf"] = input_out(model.hf, pins)
        del out["arch"], out["kwargs"]  # the folder's config.json is the architecture
        if model.checkpoint == model.hf:
            del out["checkpoint"]  # the folder's own weights: the default
    for name in _LATER_KEYS:
        if out[name] == default_of(ModelSpec, name):
            del out[name]
    return out
