"""Checks that a spec's inputs really fit together, before any run is created.

Parsing proves the spec is well-formed; this proves the model builds, every checkpoint
fits it, the data set is there and the model's outputs match its labels. It costs one
model build and one data load, which is nothing next to a run and far better than a
failed pod.
"""

from __future__ import annotations

import copy

import torch

from landscape_job.models.checkpoints import load_into, load_state_dict
from landscape_job.surface.curvature import hessian_split
from landscape_job.surface.directions import read_direction_file
from landscape_job.base.errors import UserError
from landscape_job.inputs.fetch import Fetcher
from landscape_job.spec.localize import localize
from landscape_job.spec.sections import Spec
from landscape_job.surface.centre import build_centre_model, check_outputs, check_tokens, load_splits


def check_device(spec: Spec) -> None:
    """``compute.device: cuda`` on a machine without CUDA: one line before anything is written.

    Only for running here (``validate``, ``submit --local``): a cluster spec's pods have
    the GPUs, and ``launcher validate --static`` checks such a spec without this.
    """
    if spec.compute.device == "cuda" and not torch.cuda.is_available():
        raise UserError("compute.device: cuda, but torch finds no CUDA device on this machine; use auto or cpu "
                        "to run here (a spec for the cluster: launcher validate --static)")


def check_runs_here(spec: Spec) -> dict[str, int]:
    """What running ``spec`` on this machine needs: its device, then its inputs (``check_inputs``)."""
    check_device(spec)
    return check_inputs(spec)


def check_inputs(spec: Spec) -> dict[str, int]:
    """Returns the number of samples in each split; raises UserError naming the input at fault.

    Remote inputs are fetched into this machine's cache (and verified against their pins)
    on the way, so a local run's stages find them there.
    """
    spec = localize(spec)
    model = build_centre_model(spec)
    for i, target in enumerate(spec.directions.targets):
        # A copy only to test the fit: the centre's weights are not needed again.
        load_into(copy.deepcopy(model), load_state_dict(target), f"directions.targets[{i}] {target}")
    for i, point in enumerate(spec.directions.trajectory):
        load_into(copy.deepcopy(model), load_state_dict(point), f"directions.trajectory[{i}] {point}")
    if spec.series is not None:  # prepare checks them again (a cluster's files are the pods')
        fetcher = Fetcher(s3_options=spec.storage.options)
        for i, point in enumerate(spec.series.checkpoints):
            where = f"series.checkpoints[{i}]"
            load_into(copy.deepcopy(model), load_state_dict(fetcher.file(point, where, spec.pins.get(point))),
                      f"{where} {point}")
    if spec.directions.type == "file":
        read_direction_file(spec.directions.file, model, two_d=spec.grid.ndim == 2)
    splits = load_splits(spec)
    check_tokens(model, splits, spec)
    check_outputs(model, splits[0], spec)
    if spec.uses_hessian:
        hessian_split(spec)  # hessian.subset larger than its split is named here, not in the prepare pod
    return {s.name: len(s.labels) for s in splits}
