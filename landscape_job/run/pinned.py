"""Inputs pinned to the run: prepare records each input file's sha256 in the manifest, every stage checks it.

A run's directions were built from one model; a resume that reads another (a checkpoint
copied over ``ck/model.pt`` between attempts) would compute rows of the surface around
it and merge them with the rest. So before it uses any input, a stage hashes the file it
is about to read and compares it with the manifest: a mismatch is one line naming the
input and the way out, never a mixed surface.

Pinned: ``model.checkpoint``, ``directions.targets``, ``directions.trajectory``,
``directions.file`` (the manifest's ``checkpoints``, keyed by the spec's URL as always),
and the files of ``data.root`` where they are few (an archive, or a ``tensors`` folder's
``train``/``test`` files: the manifest's ``data_files``). Built-in data sets are
torchvision's or scikit-learn's, and image folders are too many files to hash on every
start; they are not pinned.
"""

from __future__ import annotations

import os
from pathlib import Path

from landscape_job.base.errors import UserError
from landscape_job.inputs.fetch import file_sha256
from landscape_job.run.records import Manifest
from landscape_job.spec.sections import Spec

#: The files of a ``tensors`` folder that the loader reads (custom_data).
_TENSOR_FILES = ("train.pt", "test.pt", "train.npz", "test.npz")
#: The files of a ``tokens`` folder that the loader may read (datasets.tokens).
_TOKEN_FILES = tuple(f"{split}{suffix}" for split in ("train", "test") for suffix in (".bin", ".npy", ".npz", ".txt",
                                                                                       ".jsonl"))


def checkpoint_inputs(spec: Spec) -> list[tuple[str, str]]:
    """(spec key, input) of every checkpoint-like input, in the manifest's order."""
    d = spec.directions
    own = [] if spec.model.checkpoint == spec.model.hf else [("model.checkpoint", spec.model.checkpoint)]
    return [*own,
            *((f"directions.targets[{i}]", t) for i, t in enumerate(d.targets)),
            *((f"directions.trajectory[{i}]", t) for i, t in enumerate(d.trajectory)),
            *([("directions.file", d.file)] if d.file else [])]


def data_files(spec: Spec, local: Spec) -> dict[str, str]:
    """``data.root`` label -> local file, for the data files small enough in number to pin."""
    root, local_root = spec.data.root, local.data.root
    if not root or not local_root:
        return {}
    if os.path.isfile(local_root):
        return {root: local_root}
    names = {"tensors": _TENSOR_FILES, "tokens": _TOKEN_FILES}.get(spec.data.dataset, ())
    if names and os.path.isdir(local_root):
        return {f"{root}/{name}": str(Path(local_root) / name) for name in names
                if (Path(local_root) / name).is_file()}
    return {}


def model_files(spec: Spec, local: Spec) -> dict[str, str]:
    """``model.hf``'s config.json and safetensors weights (label under the spec's URL -> local file)."""
    if spec.model.hf is None or local.model.hf is None or not os.path.isdir(local.model.hf):
        return {}
    return {f"{spec.model.hf.rstrip('/')}/{name}": str(Path(local.model.hf) / name)
            for name in sorted(os.listdir(local.model.hf))
            if name == "config.json" or name.endswith(".safetensors") or name == "model.safetensors.index.json"}


def record_inputs(spec: Spec, local: Spec) -> tuple[dict[str, str], dict[str, str]]:
    """The manifest's ``checkpoints`` and ``data_files``: sha256 of each local copy, keyed by the spec's URL."""
    checkpoints = {url: file_sha256(path) for (_, url), (_, path) in zip(checkpoint_inputs(spec),
                                                                          checkpoint_inputs(local))}
    checkpoints.update({label: file_sha256(path) for label, path in model_files(spec, local).items()})
    return checkpoints, {label: file_sha256(path) for label, path in data_files(spec, local).items()}


def verify_inputs(spec: Spec, local: Spec, manifest: Manifest, stage: str) -> None:
    """Each pinned input's file has the sha256 the manifest recorded; else one line naming it.

    A manifest from before pins (no entry for an input) pins nothing for it.
    """
    pinned = [(key, url, path, manifest.checkpoints.get(url))
              for (key, url), (_, path) in zip(checkpoint_inputs(spec), checkpoint_inputs(local))]
    pinned += [("model.hf", label, path, manifest.checkpoints.get(label)) for label, path in model_files(spec, local).items()]
    pinned += [("data.root", label, path, (manifest.data_files or {}).get(label))
               for label, path in data_files(spec, local).items()]
    for key, url, path, recorded in pinned:
        if recorded is None:
            continue
        try:
            found = file_sha256(path)
        except OSError as err:
            raise UserError(f"{key}: cannot read {url} to check it against the run ({err.strerror})") from None
        if found != recorded:
            raise UserError(f"{key}: {url} changed since this run's directions were built (sha256 {found[:12]}, "
                            f"the run recorded {recorded[:12]}); the {stage} stage will not mix inputs: restore the "
                            f"file, or start a new run (a new --run-id) with it")
