"""A spec's inputs: listing them, checking they are reachable, and making them local.

Every input a spec names (checkpoints, direction targets, a direction file, a data root)
is a path, an ``s3://`` or an ``https://`` URL; a stage works on local files, fetched and
verified against the pins by ``landscape_job.inputs.fetch``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from landscape_job.base.errors import UserError
from landscape_job.inputs.fetch import Fetcher, is_archive
from landscape_job.spec.sections import Spec


def spec_inputs(spec: Spec) -> Iterator[tuple[str, str, bool]]:
    """``(key, url, is_folder)`` for every input a spec names."""
    if spec.model.hf is not None:
        yield "model.hf", spec.model.hf, True
    if spec.model.checkpoint == spec.model.hf:
        pass  # the model folder's own weights
    elif not (spec.series is not None and spec.model.checkpoint.endswith("/")):  # a series' S3 prefix, listed below
        yield "model.checkpoint", spec.model.checkpoint, False
    for i, target in enumerate(spec.directions.targets):
        yield f"directions.targets[{i}]", target, False
    for i, checkpoint in enumerate(spec.directions.trajectory):
        yield f"directions.trajectory[{i}]", checkpoint, False
    if spec.directions.file:
        yield "directions.file", spec.directions.file, False
    for i, checkpoint in enumerate(spec.series.checkpoints if spec.series is not None else ()):
        # Fetched one by one by the shard that needs it; an S3 prefix (trailing "/") is checked by a listing.
        yield f"series.checkpoints[{i}]", checkpoint, checkpoint.endswith("/")
    if spec.data.root:
        yield "data.root", spec.data.root, True


def check_reachable(spec: Spec) -> None:
    """One HEAD (or list) per remote input: a missing object is named before anything is created."""
    fetcher = Fetcher(s3_options=spec.storage.options)
    for key, url, folder in spec_inputs(spec):
        fetcher.check(url, key, folder)


def check_cache_fits(spec: Spec, limit: int, fetcher: Fetcher | None = None) -> int:
    """The bytes the spec's remote inputs take in a pod's cache (one HEAD or listing each); a UserError
    naming ``kubernetes.cache_size`` where they exceed ``limit``, before a byte is downloaded.

    An archive counts twice: it is kept beside its extracted tree. Local paths (a claim) take no cache.
    """
    fetcher = fetcher or Fetcher(s3_options=spec.storage.options)
    sizes: dict[str, int] = {}
    for key, url, folder in spec_inputs(spec):
        if key.startswith("series."):  # one checkpoint at a time, by the shard that needs it
            continue
        size = fetcher.check(url, key, folder, sized=True)
        if size:
            sizes[key] = size * (2 if is_archive(url) else 1)
    total = sum(sizes.values())
    if total > limit:
        largest = ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
        raise UserError(f"kubernetes.cache_size: the inputs take {total / 2**30:.2f} GiB in each pod's cache "
                        f"({largest}), more than its {limit / 2**30:.2f} GiB; raise kubernetes.cache_size (the "
                        f"node's disk must hold it too) or use kubernetes.cache_claim")
    return total


def localize(spec: Spec, fetcher: Fetcher | None = None) -> Spec:
    """The spec with every input a local path (fetched, verified, extracted), and its user code importable.

    Only for the stage's own use: the run keeps the URLs (and the hash of the spec with
    URLs), so the same run means the same thing on every pod whatever its cache holds.
    """
    from landscape_job.base import pyref

    pyref.activate(spec.python.path, spec.python.requirements)
    fetcher = fetcher or Fetcher(s3_options=spec.storage.options)
    pins = spec.pins
    hf = spec.model.hf
    if hf is not None:
        hf = fetcher.folder(hf, "model.hf", pins.get(hf))
    checkpoint = (hf if spec.model.checkpoint == spec.model.hf else
                  fetcher.file(spec.model.checkpoint, "model.checkpoint", pins.get(spec.model.checkpoint)))
    targets = tuple(fetcher.file(t, f"directions.targets[{i}]", pins.get(t))
                    for i, t in enumerate(spec.directions.targets))
    trajectory = tuple(fetcher.file(t, f"directions.trajectory[{i}]", pins.get(t))
                       for i, t in enumerate(spec.directions.trajectory))
    file = (fetcher.file(spec.directions.file, "directions.file", pins.get(spec.directions.file))
            if spec.directions.file else None)
    root = spec.data.root
    if root is not None:
        root = fetcher.folder(root, "data.root", pins.get(root))
    elif spec.data.download:
        root = str(fetcher.cache / "downloads")
    return dataclasses.replace(
        spec,
        model=dataclasses.replace(spec.model, checkpoint=checkpoint, hf=hf),
        directions=dataclasses.replace(spec.directions, targets=targets, trajectory=trajectory, file=file),
        data=dataclasses.replace(spec.data, root=root),
    )
