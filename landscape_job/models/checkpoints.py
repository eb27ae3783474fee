"""Reading and writing model checkpoints, safely and with errors a user can act on.

Checkpoints arrive from strangers (the paper's released ``.t7`` files, a colleague's
bucket), so they are only ever read with ``torch.load(weights_only=True)``: a file that
needs arbitrary unpickling is refused, never executed; a ``.safetensors`` file holds
tensors only and is read with safetensors. The layouts in the wild are accepted: a bare
state_dict, the paper's ``{'state_dict': ..., 'epoch': ..., 'acc': ...}``, PyTorch's
tutorial ``{'model_state_dict': ...}``, ``{'model': ...}``, or any entry named by
``model.checkpoint_key``; DataParallel's ``module.`` and torch.compile's ``_orig_mod.``
prefixes are removed. Which was used is logged.

Tied weights (a language model's output layer that *is* its input embedding) are one
tensor under two names in ``state_dict()``; ``save_pretrained`` and
``safetensors.torch.save_model`` store it once. ``load_into`` takes a checkpoint that has
one name of each tied group (``tied_aliases``) and refuses one whose copies differ.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape_job.base.errors import UserError
from landscape_job.runtime.memory import storage_key

__all__ = ["load_state_dict", "load_into", "save_checkpoint", "tied_aliases"]

_LIST_LIMIT = 5


def _refusal_reason(exc: BaseException) -> str:
    """One clause out of torch's many-line refusal; never its advice to disable weights_only."""
    text = str(exc)
    if m := re.search(r"Unsupported global: GLOBAL (\S+)", text):
        return f"it pickles {m[1]}, which weights-only loading refuses"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, (RuntimeError, EOFError)) and text:
        return " ".join(text.split())[:200]
    return "it is not a torch.save file, or is damaged"


#: The entries training code keeps a state_dict under, tried in this order when the file
#: is not a state_dict itself: the paper's, PyTorch's tutorial convention, and the
#: common ``{'model': ..., 'optimizer': ...}``.
LAYOUT_KEYS = ("state_dict", "model_state_dict", "model")
#: Prefixes wrappers add to every key: DataParallel / DistributedDataParallel's ``module.``
#: and torch.compile's ``_orig_mod.`` (both, in either order, when wrappers are stacked).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_log = logging.getLogger(__name__)


def _strip_one(sd: Mapping[str, torch.Tensor], prefix: str) -> Mapping[str, torch.Tensor]:
    out: OrderedDict[str, torch.Tensor] = OrderedDict((k[len(prefix):], v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if isinstance(meta, dict):
        # Module versions (BatchNorm's, e.g.) keyed by module path; keep them under the new paths.
        top = prefix[:-1]
        out._metadata = OrderedDict(  # type: ignore[attr-defined]
            ("" if k == top else k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in meta.items())
    return out


def strip_prefixes(sd: Mapping[str, torch.Tensor]) -> tuple[Mapping[str, torch.Tensor], list[str]]:
    """Drops the wrappers' prefixes that every key has (only then are they a wrapper's), and names them."""
    removed: list[str] = []
    while sd:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in sd)), None)
        if prefix is None:
            break
        sd = _strip_one(sd, prefix)
        removed.append(prefix)
    return sd, removed


def _strip_prefix(sd: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    return strip_prefixes(sd)[0]


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _is_safetensors(p: Path) -> bool:
    """By name, or by content (an 8-byte header length, then its JSON), for a URL's file named otherwise."""
    if p.suffix == ".safetensors":
        return True
    try:
        with p.open("rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK")


def _read_file(p: Path, mmap: bool = False) -> Any:
    """The file's object: a safetensors file's tensors, or torch.load's weights-only result
    (``mmap``: a zip-format file's tensors mapped from the file, read as they are touched)."""
    if _is_safetensors(p):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return OrderedDict(load_file(str(p), device="cpu"))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"{p}: cannot read safetensors checkpoint ({_refusal_reason(e)})") from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(p))
    except Exception as e:  # noqa: BLE001 - any failure to read a user's file is the user's
        raise UserError(f"{p}: cannot read checkpoint ({_refusal_reason(e)}); it must be a state_dict "
                        "saved with torch.save (weights-only loadable) or a .safetensors file, e.g. "
                        "torch.save({'state_dict': model.state_dict()}, path)") from None


def _entry(obj: Mapping, key: str, p: Path) -> tuple[Any, str]:
    """``model.checkpoint_key``: an entry (``ema``), a path of entries (``ema.model``), or the
    keys under a prefix of a flat state_dict (``model`` takes ``model.*``)."""
    if key in obj:
        return obj[key], f"entry {key!r}"
    node: Any = obj
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            node = None
            break
        node = node[part]
    if node is not None:
        return node, f"entry {key!r}"
    prefix = key + "."
    sub = OrderedDict((k[len(prefix):], v) for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix))
    if sub:
        return sub, f"keys under {prefix!r}"
    raise UserError(f"model.checkpoint_key: {p} has no entry {key!r}; it has {_short([repr(k) for k in obj])}")


def _choose(obj: Mapping, key: str | None, p: Path) -> tuple[Any, list[str]]:
    """The state_dict inside ``obj`` and the words saying where it was found."""
    if key is not None:
        sd, where = _entry(obj, key, p)
        return sd, [where]
    if _is_state_dict(obj):
        return obj, []
    for name in LAYOUT_KEYS:
        if name in obj:
            return obj[name], [f"entry {name!r}"]
    return obj, []


def load_state_dict(path: str | os.PathLike, key: str | None = None,
                    mmap: bool = False) -> OrderedDict[str, torch.Tensor]:
    """The state_dict in ``path``, on the CPU, without wrappers' prefixes.

    ``key`` (``model.checkpoint_key``) names the entry that holds it; without one, a bare
    state_dict or the first of ``LAYOUT_KEYS`` is taken. Which entry and which prefixes
    were used is logged, so a surprising choice can be seen.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise UserError(f"{p}: checkpoint {what}; check the path in the spec")
    obj: Any = _read_file(p, mmap)
    if not isinstance(obj, Mapping):
        raise UserError(f"{p}: checkpoint holds a {type(obj).__name__}, not a state_dict; save "
                        "model.state_dict() (or {'state_dict': model.state_dict()}) instead")
    sd, used = _choose(obj, key, p)
    if not isinstance(sd, Mapping):
        raise UserError(f"{p}: checkpoint's {used[0]} is a {type(sd).__name__}, not a mapping of tensors; "
                        "for model.checkpoint, model.checkpoint_key names the entry that holds the weights")
    bad = [k for k, v in sd.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad or not sd:
        if sd is obj and bad:
            detail = (f"it has keys {_short([repr(k) for k in obj])} but none of {', '.join(LAYOUT_KEYS)}; "
                      "for model.checkpoint, model.checkpoint_key names the entry that holds the weights")
        elif bad:
            detail = f"entries {_short([repr(k) for k in bad])} are not named tensors"
        else:
            detail = "it is empty"
        raise UserError(f"{p}: not a state_dict ({detail}); save model.state_dict() or "
                        "{'state_dict': model.state_dict(), ...}")
    stripped, prefixes = strip_prefixes(sd)
    used += [f"prefix {q!r} removed" for q in prefixes]
    if used and used != ["entry 'state_dict'"]:  # the paper's layout needs no word
        _log.info("%s: checkpoint layout: %s", p, ", ".join(used))
    out: OrderedDict[str, torch.Tensor] = OrderedDict(stripped.items())
    meta = getattr(stripped, "_metadata", None)
    if isinstance(meta, dict):
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def _short(items: list[str]) -> str:
    """``a, b, c, d, e and 7 more``: one line however large the model is."""
    head = ", ".join(items[:_LIST_LIMIT])
    return head if len(items) <= _LIST_LIMIT else f"{head} and {len(items) - _LIST_LIMIT} more"


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """``state_dict`` names that are the same tensor as an earlier name: alias -> the first name.
    (``named_parameters`` lists a tied parameter once, under the first name.)"""
    first: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if tensor.numel() == 0:
            continue
        where = (storage_key(tensor), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
        if where in first:
            aliases[name] = first[where]
        else:
            first[where] = name
    return aliases


def _fill_tied(sd: Mapping[str, torch.Tensor], model: nn.Module, source: str) -> Mapping[str, torch.Tensor]:
    """The checkpoint with every tied name present: a name it lacks takes its group's stored tensor."""
    aliases = tied_aliases(model)
    if not aliases:
        return sd
    groups: dict[str, list[str]] = {}
    for alias, kept in aliases.items():
        groups.setdefault(kept, [kept]).append(alias)
    out = OrderedDict(sd.items())
    for names in groups.values():
        present = [n for n in names if n in sd]
        if not present:
            continue
        for other in present[1:]:
            if sd[other].shape == sd[present[0]].shape and not torch.equal(sd[other], sd[present[0]]):
                raise UserError(f"{source}: {present[0]} and {other} are one tied tensor in the model but differ in "
                                "the checkpoint; it was saved from an untied model")
        for name in names:
            out.setdefault(name, sd[present[0]])
    meta = getattr(sd, "_metadata", None)
    if isinstance(meta, dict):
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly, or raise one UserError naming ``source`` and everything that does not fit.

    A BatchNorm ``num_batches_tracked`` missing from the checkpoint is not a mismatch:
    PyTorch before 0.4.1 did not save it, the paper's checkpoints predate it, and it
    takes no part in evaluation; the model's own value is kept.
    """
    sd = _fill_tied(_strip_prefix(state_dict), model, source)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_short(shapes)}")
        raise UserError(f"{source}: checkpoint does not fit model.arch ({'; '.join(parts)}); check that "
                        "model.arch, model.kwargs and the data set's number of classes match the saved network")
    full: OrderedDict[str, torch.Tensor] = OrderedDict(sd.items())
    for k in own:
        full.setdefault(k, own[k])  # only num_batches_tracked can be absent here
    meta = getattr(sd, "_metadata", None)
    if isinstance(meta, dict):
        full._metadata = meta  # type: ignore[attr-defined]  # module versions steer upgrades
    model.load_state_dict(full, strict=True)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    """Write ``{'state_dict': ..., **extra}`` in the paper's layout, atomically.

    Tensors are moved to the CPU so the file loads anywhere; the write goes through a
    temporary file and a rename, so a preempted pod never leaves half a checkpoint.
    ``extra`` should hold plain data (numbers, strings) to stay weights-only loadable.
    """
    if "state_dict" in extra:
        raise ValueError("save_checkpoint: 'state_dict' is written from the model; do not pass it in extra")
    own = model.state_dict()
    sd: OrderedDict[str, torch.Tensor] = OrderedDict((k, v.detach().cpu()) for k, v in own.items())
    meta = getattr(own, "_metadata", None)
    if meta is not None:
        sd._metadata = meta  # type: ignore[attr-defined]
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"state_dict": sd, **extra}, f)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
