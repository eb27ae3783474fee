"""Token data for language models (``data.dataset: tokens``): token ids as the evaluator's splits.

A language model's loss landscape is measured on a fixed set of token sequences, the same
in every pod, shard and restart. ``data.root`` (a folder, an archive, an ``s3://`` or
``https://`` prefix, fetched like every input) holds one file per split, the first found of:

- ``train.bin``: a flat stream of token ids as nanoGPT's ``prepare.py`` writes it
  (``uint16``; ``data.options.dtype: uint32`` for vocabularies above 65,536), read through a
  memory map and cut into consecutive windows of ``data.context`` tokens;
- ``train.npy``: a flat stream (1-D, cut the same way) or sequences (2-D, ``(N, T)``);
- ``train.npz``: ``input_ids`` ``(N, T)``, optionally ``attention_mask`` ``(N, T)`` (0: padding)
  and ``labels``: ``(N,)`` classes for ``sequence_classification``, ``(N, T)`` token labels
  (-100: not scored) for ``masked_lm`` or ``causal_lm`` as the user made them;
- ``train.txt``: text, tokenized with ``model.hf``'s own tokenizer into one stream and cut
  into windows of ``data.context``;
- ``train.jsonl``: one record per line, ``{"text": ...}`` (and ``"label"`` for
  ``sequence_classification``), each one sequence, truncated to ``data.context`` and padded
  on the right, with its attention mask.

``data.sequences`` keeps a seeded selection (``data.subset_seed``) of that many sequences
per split, in file order. Labels follow ``task``: ``causal_lm`` scores every real token
(labels are the ids, -100 at padding, shifted in the loss as ``transformers`` does);
``masked_lm`` without given labels masks a seeded ``data.options.mask_probability`` (0.15)
of the real tokens with the tokenizer's mask token (or ``data.options.mask_token_id``) and
scores those only; ``sequence_classification`` takes the file's labels.

What only the files can tell is refused here in one line naming the file: a split that is
empty or shorter than one context, ids that are negative or not integers, a context that
does not match the file's sequences. Ids against the model's vocabulary and the context
against its positions are checked with the model (``surface.centre.check_tokens``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
import torch

from landscape_job.base import pyref
from landscape_job.base.errors import UserError
from landscape_job.datasets.builtin import Split, subset_indices
from landscape_job.spec.sections import DataSpec

#: The file kinds a split may come in, in the order they are looked for.
SUFFIXES = (".bin", ".npy", ".npz", ".txt", ".jsonl")
#: A label position that is not scored (transformers' convention).
IGNORE_INDEX = -100
_OPTIONS = {"dtype": "uint16", "mask_probability": 0.15, "mask_token_id": None}
_BIN_DTYPES = ("uint16", "uint32")


def token_file(root: str | None, split: str) -> str:
    """The split's file under ``data.root``, or one line saying what was looked for."""
    if not root:
        raise UserError("data.root: token data is read from files; set data.root to their folder, archive or "
                        "s3:// prefix")
    for suffix in SUFFIXES:
        path = os.path.join(root, split + suffix)
        if os.path.isfile(path):
            return path
    raise UserError(f"data.root: no {split} file under {root} (looked for {', '.join(split + s for s in SUFFIXES)})")


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [k for k in options if k not in _OPTIONS]
    if unknown:
        raise UserError(f"data.options.{unknown[0]}: unknown option for tokens; choose from {', '.join(_OPTIONS)}")
    merged = {**_OPTIONS, **options}
    if merged["dtype"] not in _BIN_DTYPES:
        raise UserError(f"data.options.dtype: a .bin file holds {' or '.join(_BIN_DTYPES)} ids, got "
                        f"{merged['dtype']!r}")
    p = merged["mask_probability"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise UserError(f"data.options.mask_probability: expected a number in (0, 1], got {p!r}")
    m = merged["mask_token_id"]
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 0):
        raise UserError(f"data.options.mask_token_id: expected a token id (an integer >= 0), got {m!r}")
    return merged


def load_token_split(data: DataSpec, split: str, task: str, tokenizer_folder: str | None = None) -> Split:
    """One split of token data as a ``Split``: int64 ids (N, T), their attention mask and the task's labels."""
    options = _options(data.options)
    path = token_file(data.root, split)
    name = os.path.basename(path)
    given: dict[str, torch.Tensor] = {}
    if path.endswith((".bin", ".npy")):
        array = (np.memmap(path, dtype=options["dtype"], mode="r") if path.endswith(".bin")
                 else np.load(path, mmap_mode="r", allow_pickle=False))
        given = _sequences(array, data, name)
    elif path.endswith(".npz"):
        given = _read_npz(path, data, name)
    elif path.endswith(".txt"):
        stream = _tokenizer(tokenizer_folder, name)(_read_text(path), add_special_tokens=False)["input_ids"]
        given = _sequences(np.asarray(stream, dtype=np.int64), data, name)
    else:
        given = _read_jsonl(path, data, name, tokenizer_folder, task)
    ids = given["input_ids"]
    mask = given.get("attention_mask", torch.ones_like(ids))
    labels = given.get("labels")
    if data.sequences is not None and "selected" not in given:
        chosen = _selection(len(ids), data, name)
        ids, mask = ids[chosen], mask[chosen]
        labels = None if labels is None else labels[chosen]
    ids, mask = ids.contiguous(), mask.contiguous()
    labels = _labels(task, ids, mask, labels, options, tokenizer_folder, data, name)
    classes = (data.classes or int(labels.max()) + 1) if task == "sequence_classification" else int(ids.max()) + 1
    return Split(inputs=ids, labels=labels, num_classes=max(classes, 2), name=split, attention_mask=mask)


def _selection(total: int, data: DataSpec, name: str) -> torch.Tensor:
    if data.sequences > total:
        raise UserError(f"data.sequences: {data.sequences} is more than the {total} sequences of {name}; "
                        "lower it or drop it")
    return subset_indices(total, data.sequences, data.subset_seed)


def _sequences(array: np.ndarray, data: DataSpec, name: str) -> dict[str, torch.Tensor]:
    """``input_ids``: a flat stream cut into windows of ``data.context`` (only the selected windows
    are read: then ``selected`` says which), or a 2-D array of sequences; int64 either way."""
    if not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"data.root: {name} holds {array.dtype} values; token ids are integers")
    if array.ndim == 2:
        _check_context(array.shape[1], data, name)
        if len(array) == 0:
            raise UserError(f"data.root: {name} holds no sequences; the split would be empty")
        return {"input_ids": _checked_ids(torch.from_numpy(np.asarray(array, dtype=np.int64)), name)}
    if array.ndim != 1:
        raise UserError(f"data.root: {name} has shape {array.shape}; expected a flat stream of ids or (N, T) sequences")
    if data.context is None:
        raise UserError(f"data.context: {name} is a flat stream of token ids; set data.context to the tokens per "
                        "sequence")
    windows = len(array) // data.context
    if windows == 0:
        raise UserError(f"data.root: {name} holds {len(array)} tokens, fewer than data.context ({data.context}); "
                        "the split would be empty")
    rows = (torch.arange(windows) if data.sequences is None else _selection(windows, data, name))
    starts = rows.numpy()[:, None] * data.context + np.arange(data.context)[None, :]
    return {"input_ids": _checked_ids(torch.from_numpy(np.asarray(array[starts], dtype=np.int64)), name),
            "selected": rows}


def _check_context(length: int, data: DataSpec, name: str) -> None:
    if data.context is not None and data.context != length:
        raise UserError(f"data.context: {name} holds sequences of {length} tokens, not {data.context}; set "
                        f"data.context to {length} or remove it")


def _checked_ids(ids: torch.Tensor, name: str) -> torch.Tensor:
    if ids.numel() and int(ids.min()) < 0:
        raise UserError(f"data.root: {name} holds negative token ids ({int(ids.min())}); ids are 0..vocabulary-1")
    return ids


def _read_npz(path: str, data: DataSpec, name: str) -> dict[str, torch.Tensor]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as e:
        raise UserError(f"data.root: cannot read {name} as .npz ({pyref.one_line(e)})") from None
    if "input_ids" not in arrays:
        raise UserError(f"data.root: {name} has no array input_ids (it has {', '.join(arrays) or 'none'})")
    if arrays["input_ids"].ndim != 2:
        raise UserError(f"data.root: {name}: input_ids must be (N, T) sequences, got shape {arrays['input_ids'].shape}")
    out = _sequences(arrays["input_ids"], data, name)
    for key in ("attention_mask", "labels"):
        if key in arrays:
            value = torch.from_numpy(np.asarray(arrays[key]).astype(np.int64))
            if len(value) != len(out["input_ids"]) or (key == "attention_mask" and value.shape != out["input_ids"].shape):
                raise UserError(f"data.root: {name}: {key} has shape {tuple(value.shape)}, input_ids "
                                f"{tuple(out['input_ids'].shape)}")
            out[key] = value
    return out


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"data.root: cannot read {os.path.basename(path)} as UTF-8 text ({pyref.one_line(e)})") from None


def _tokenizer(folder: str | None, name: str):
    """model.hf's own tokenizer, from its files only (no hub, no code from the folder)."""
    if folder is None:
        raise UserError(f"data.root: {name} is text; tokenizing it needs model.hf's tokenizer (or give token ids "
                        "as .bin, .npy or .npz)")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UserError("model.hf: needs the transformers package: pip install 'landscape[lm]'") from None
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - a user's folder
        raise UserError(f"model.hf: no usable tokenizer in {folder} for {name} ({pyref.one_line(e)})") from None


def _read_jsonl(path: str, data: DataSpec, name: str, folder: str | None, task: str) -> dict[str, torch.Tensor]:
    """One sequence per record: truncated to data.context, right-padded, with its mask (and label)."""
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise UserError(f"data.root: {name} line {number} is not JSON ({pyref.one_line(e)})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f"data.root: {name} line {number}: expected {{\"text\": ...}}")
        if task == "sequence_classification" and not isinstance(record.get("label"), int):
            raise UserError(f"data.root: {name} line {number}: sequence_classification needs an integer \"label\"")
        records.append(record)
    if not records:
        raise UserError(f"data.root: {name} holds no records; the split would be empty")
    out: dict[str, torch.Tensor] = {}
    if data.sequences is not None:
        chosen = _selection(len(records), data, name)
        records = [records[i] for i in chosen.tolist()]
        out["selected"] = chosen
    tokenizer = _tokenizer(folder, name)
    encoded = [tokenizer(r["text"])["input_ids"][:data.context] for r in records]
    if not all(encoded):
        raise UserError(f"data.root: {name}: a record's text has no tokens")
    width = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(encoded), width), pad, dtype=torch.int64)
    mask = torch.zeros((len(encoded), width), dtype=torch.int64)
    for i, e in enumerate(encoded):
        ids[i, :len(e)] = torch.tensor(e, dtype=torch.int64)
        mask[i, :len(e)] = 1
    out.update(input_ids=_checked_ids(ids, name), attention_mask=mask)
    if task == "sequence_classification":
        out["labels"] = torch.tensor([r["label"] for r in records], dtype=torch.int64)
    return out


def _labels(task: str, ids: torch.Tensor, mask: torch.Tensor, given: torch.Tensor | None, options: dict[str, Any],
            folder: str | None, data: DataSpec, name: str) -> torch.Tensor:
    if task == "sequence_classification":
        if given is None or given.dim() != 1:
            raise UserError(f"data.root: {name}: sequence_classification needs one class label per sequence "
                            "(labels (N,) in .npz, \"label\" in .jsonl)")
        if int(given.min()) < 0:
            raise UserError(f"data.root: {name}: class labels are 0..classes-1, got {int(given.min())}")
        return given
    if given is not None:
        if given.shape != ids.shape:
            raise UserError(f"data.root: {name}: {task} labels are one per token {tuple(ids.shape)}, got "
                            f"{tuple(given.shape)}")
        return given
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    if task == "causal_lm":
        return labels
    return _masked(ids, labels, mask, options, folder, data, name)


def _masked(ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, options: dict[str, Any],
            folder: str | None, data: DataSpec, name: str) -> torch.Tensor:
    """masked_lm: a seeded choice of real tokens replaced by the mask token (in ``ids``, in place) and scored."""
    token = options["mask_token_id"]
    if token is None and folder is not None:
        token = _tokenizer(folder, name).mask_token_id
    if token is None:
        raise UserError("data.options.mask_token_id: masked_lm needs the mask token; give it, or a model.hf whose "
                        "tokenizer has one, or labels in an .npz")
    generator = torch.Generator(device="cpu").manual_seed(int(data.subset_seed))
    chosen = (torch.rand(ids.shape, generator=generator) < options["mask_probability"]) & (mask == 1)
    ids[chosen] = int(token)
    return labels.masked_fill(~chosen, IGNORE_INDEX)


# -- in memory (the Python API) ---------------------------------------------------------


def _batches(data: Any) -> list[Any]:
    """A DataLoader's batches in its data set's order (a shuffling loader re-wrapped, as for tensors)."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        return list(DataLoader(data.dataset, batch_size=data.batch_size or 64, shuffle=False, num_workers=0,
                               collate_fn=data.collate_fn))
    return [data]


def _padded(parts: list[torch.Tensor], fill: int) -> torch.Tensor:
    """Batches of different lengths (a collator pads each to its own longest) padded on the right to one."""
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=fill) for p in parts])


def token_split(data: Any, name: str, task: str, classes: int | None = None) -> Split:
    """A split handed over in memory: integer ids ``(N, T)``, a dict of ``input_ids`` (and
    ``attention_mask``, ``labels``) as a tokenizer or a Hugging Face DataLoader gives them, or
    such a DataLoader itself; checked and labelled as the files are."""
    where = f"data[{name!r}]"
    ids_parts, mask_parts, label_parts = [], [], []
    for batch in _batches(data):
        if isinstance(batch, Mapping):
            if "input_ids" not in batch:
                raise UserError(f"{where}: a dict of token data needs input_ids (it has {', '.join(map(str, batch))})")
            ids = torch.as_tensor(batch["input_ids"])
            mask = torch.as_tensor(batch["attention_mask"]) if batch.get("attention_mask") is not None else None
            labels = torch.as_tensor(batch["labels"]) if batch.get("labels") is not None else None
        else:
            ids, mask, labels = torch.as_tensor(batch), None, None
        if ids.is_floating_point() or ids.dtype == torch.bool or ids.dim() != 2:
            raise UserError(f"{where}: token ids must be integers of shape (N, T), got {ids.dtype} {tuple(ids.shape)}")
        ids = ids.to(torch.int64)
        ids_parts.append(ids)
        mask_parts.append(torch.ones_like(ids) if mask is None else mask.to(torch.int64))
        if labels is not None:
            label_parts.append(labels.to(torch.int64))
    if not ids_parts or sum(len(p) for p in ids_parts) == 0:
        raise UserError(f"{where}: no sequences; the split would be empty")
    if label_parts and len(label_parts) != len(ids_parts):
        raise UserError(f"{where}: some batches have labels and some do not")
    ids, mask = _padded(ids_parts, 0), _padded(mask_parts, 0)
    labels = None
    if label_parts:
        labels = torch.cat(label_parts) if label_parts[0].dim() == 1 else _padded(label_parts, IGNORE_INDEX)
    data_spec = DataSpec(dataset="tokens", classes=classes)
    labels = _labels(task, _checked_ids(ids, where), mask, labels, _options({}), None, data_spec, where)
    count = (classes or int(labels.max()) + 1) if task == "sequence_classification" else int(ids.max()) + 1
    return Split(inputs=ids, labels=labels, num_classes=max(count, 2), name=name, attention_mask=mask)
