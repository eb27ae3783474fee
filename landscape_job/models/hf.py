"""Hugging Face models (``model.hf``): a folder of ``config.json`` and safetensors, never the hub.

A language model in the wild is a ``save_pretrained`` folder: ``config.json`` names the
architecture, ``model.safetensors`` (or shards listed by ``model.safetensors.index.json``)
hold the weights, tied tensors (GPT-2's ``lm_head.weight`` is its ``wte.weight``) stored
once. The Auto class comes from the spec's ``task`` (``AUTO_CLASSES``), and
``from_pretrained`` reads the folder with ``local_files_only`` (a pod never reaches the
hub: mirror a model to object storage and name its ``s3://`` prefix, which the stage
fetches like every input). Every weight the class needs must be in the folder: a head that
``transformers`` would initialise at random (a base model's folder under a task's class)
is refused, since a landscape around random weights means nothing. Code shipped with a
folder (``auto_map`` in its config) runs only with ``model.trust_remote_code: true``;
pickled ``pytorch_model.bin`` weights are refused (safetensors only).

``transformers`` is the optional extra ``landscape[lm]``; without it ``model.hf`` is one
line saying how to install it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from landscape_job.base import pyref
from landscape_job.base.errors import UserError

#: ``task`` -> the transformers Auto class its model is loaded with.
AUTO_CLASSES = {"causal_lm": "AutoModelForCausalLM", "masked_lm": "AutoModelForMaskedLM",
                "sequence_classification": "AutoModelForSequenceClassification"}
#: The weight files a folder may hold (only safetensors: they cannot run code).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("model.hf: needs the transformers package; pip install 'landscape[lm]'") from None
    return transformers


def _config_json(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, "config.json")
    if not os.path.isdir(folder):
        raise UserError(f"model.hf: {folder} is not a folder")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise UserError(f"model.hf: no config.json in {folder}; save the model with save_pretrained") from None
    except (OSError, ValueError) as e:
        raise UserError(f"model.hf: cannot read {path} ({pyref.one_line(e)})") from None
    if not isinstance(config, dict):
        raise UserError(f"model.hf: {path} is not a JSON object")
    return config


def hf_files(folder: str) -> list[str]:
    """The files of a model folder that make the model: config.json and the safetensors weights."""
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return [n for n in names if n == "config.json" or n.endswith(".safetensors") or n in WEIGHT_FILES]


def load_hf(folder: str, task: str, trust_remote_code: bool = False) -> nn.Module:
    """The model of ``folder`` with the class ``task`` asks for, every weight from the folder, in eval mode.

    ``use_cache`` is off: evaluating a loss needs no key/value cache, and keeping one costs memory.
    """
    config_json = _config_json(folder)
    if config_json.get("auto_map") and not trust_remote_code:
        raise UserError(f"model.hf: {folder}/config.json asks to run the folder's own Python code (auto_map); "
                        "set model.trust_remote_code: true only if you trust it")
    files = hf_files(folder)
    if not any(f in WEIGHT_FILES for f in files):
        pickled = [n for n in os.listdir(folder) if n.startswith("pytorch_model") and n.endswith(".bin")]
        hint = ("; its pytorch_model.bin is a pickle: re-save with save_pretrained(safe_serialization=True)"
                if pickled else "")
        raise UserError(f"model.hf: no model.safetensors (or its sharded index) in {folder}{hint}")
    transformers = _transformers()
    auto = getattr(transformers, AUTO_CLASSES[task])
    try:
        model, info = auto.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code,
                                           use_safetensors=True, output_loading_info=True)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's folder and config
        raise UserError(f"model.hf: transformers cannot load {folder} as {AUTO_CLASSES[task]} for task {task} "
                        f"({pyref.one_line(e)})") from None
    _check_loaded(folder, info)
    model.config.use_cache = False
    return model.eval()


def _check_loaded(folder: str, info: Mapping[str, Any]) -> None:
    """Refuse weights that transformers would have made up (missing) or that do not fit (mismatched)."""
    missing = list(info.get("missing_keys") or [])
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys") or []]
    if missing or mismatched:
        what = f"missing {', '.join(sorted(missing)[:5])}" if missing else f"mismatched {', '.join(mismatched[:5])}"
        raise UserError(f"model.hf: {folder} lacks weights the task's model needs ({what}); it would start from "
                        "random values. Is task right for this model?")


def select_logits(model: nn.Module) -> nn.Module:
    """Every call of ``model`` returns its logits: ``.logits`` of a ModelOutput, ``["logits"]`` of
    a dict, or the tensor a plain module returns (a forward hook, so parameter names stay the model's)."""
    def pick(_module, _args, outputs):
        if isinstance(outputs, Mapping) and "logits" in outputs:
            return outputs["logits"]
        return getattr(outputs, "logits", outputs)

    model.register_forward_hook(pick)
    return model
