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
from landscape_job.spec.inputs import INPUT_SCHEMA, input_out, read_input

#: ``model.output``: a key (dict), an attribute (dataclass, ModelOutput) or an index (tuple).
OUTPUT_SCHEMA = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}


@dataclass(frozen=True)
class ModelSpec:
    arch: str = key(description="zoo name (mlp, cnn, resnet56, ...) | torchvision:<name> | "
                                "python:package.module:function")
    checkpoint: str = key(kind=(str, dict), json=INPUT_SCHEMA, computed="with series: its last checkpoint",
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


#: The keys ``model_out`` writes only when they differ from their defaults.
_LATER_KEYS = ("output", "checkpoint_key")


def parse_model(s: Section, base_dir: Path, check_files: bool, pins: dict[str, str]) -> ModelSpec:
    arch = s.read(ModelSpec, "arch")
    checkpoint = read_input(s, "checkpoint", base_dir, check_files, pins)
    kwargs, output, checkpoint_key = s.read_all(ModelSpec, ("kwargs", "output", "checkpoint_key")).values()
    s.finish()
    if isinstance(output, bool) or output == "":
        raise UserError(f"model.output: expected a key, an attribute name or an index, got {shown(output)}")
    if checkpoint_key == "":
        raise UserError("model.checkpoint_key: expected the name of an entry of the checkpoint, got ''")
    return ModelSpec(arch=arch, checkpoint=checkpoint, kwargs=kwargs, output=output, checkpoint_key=checkpoint_key)


def model_out(model: ModelSpec, pins: dict[str, str]) -> dict[str, Any]:
    """The section as the normalised spec writes it."""
    out = asdict(model)
    out["checkpoint"] = input_out(model.checkpoint, pins)
    for name in _LATER_KEYS:
        if out[name] == default_of(ModelSpec, name):
            del out[name]
    return out
