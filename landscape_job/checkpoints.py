"""Reading and writing model checkpoints, safely and with errors a user can act on.

Checkpoints arrive from strangers (the paper's released ``.t7`` files, a colleague's
bucket), so they are only ever read with ``torch.load(weights_only=True)``: a file that
needs arbitrary unpickling is refused, never executed. Both layouts in the wild are
accepted: the paper's ``{'state_dict': ..., 'epoch': ..., 'acc': ...}`` and a bare
state_dict, with DataParallel's ``module.`` prefix removed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError

__all__ = ["load_state_dict", "load_into", "save_checkpoint"]

_PREFIX = "module."
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


def _strip_prefix(sd: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Drop DataParallel's ``module.`` if every key has it (only then is it DataParallel's)."""
    if not sd or not all(k.startswith(_PREFIX) for k in sd):
        return sd
    out: OrderedDict[str, torch.Tensor] = OrderedDict((k[len(_PREFIX):], v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if isinstance(meta, dict):
        # Module versions (BatchNorm's, e.g.) keyed by module path; keep them under the new paths.
        out._metadata = OrderedDict(  # type: ignore[attr-defined]
            ("" if k == "module" else k[len(_PREFIX):] if k.startswith(_PREFIX) else k, v)
            for k, v in meta.items())
    return out


def load_state_dict(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """The state_dict in ``path``, on the CPU, without the ``module.`` prefix."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise UserError(f"{p}: checkpoint {what}; check the path in the spec")
    try:
        obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read a user's file is the user's
        raise UserError(f"{p}: cannot read checkpoint ({_refusal_reason(e)}); it must be a state_dict "
                        "saved with torch.save (weights-only loadable), e.g. "
                        "torch.save({'state_dict': model.state_dict()}, path)") from None
    if not isinstance(obj, Mapping):
        raise UserError(f"{p}: checkpoint holds a {type(obj).__name__}, not a state_dict; save "
                        "model.state_dict() (or {'state_dict': model.state_dict()}) instead")
    sd = obj["state_dict"] if "state_dict" in obj else obj
    if not isinstance(sd, Mapping):
        raise UserError(f"{p}: checkpoint's 'state_dict' is a {type(sd).__name__}, not a mapping of tensors")
    bad = [k for k, v in sd.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad or not sd:
        if sd is obj and bad:
            detail = f"it has keys {_short([repr(k) for k in obj])} but no 'state_dict'"
        elif bad:
            detail = f"entries {_short([repr(k) for k in bad])} are not named tensors"
        else:
            detail = "it is empty"
        raise UserError(f"{p}: not a state_dict ({detail}); save model.state_dict() or "
                        "{'state_dict': model.state_dict(), ...}")
    stripped = _strip_prefix(sd)
    out: OrderedDict[str, torch.Tensor] = OrderedDict(stripped.items())
    meta = getattr(stripped, "_metadata", None)
    if isinstance(meta, dict):
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def _short(items: list[str]) -> str:
    """``a, b, c, d, e and 7 more``: one line however large the model is."""
    head = ", ".join(items[:_LIST_LIMIT])
    return head if len(items) <= _LIST_LIMIT else f"{head} and {len(items) - _LIST_LIMIT} more"


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly, or raise one UserError naming ``source`` and everything that does not fit.

    A BatchNorm ``num_batches_tracked`` missing from the checkpoint is not a mismatch:
    PyTorch before 0.4.1 did not save it, the paper's checkpoints predate it, and it
    takes no part in evaluation; the model's own value is kept.
    """
    sd = _strip_prefix(state_dict)
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
