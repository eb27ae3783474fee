"""Checks that a spec's inputs really fit together, before any run is created.

Parsing proves the spec is well-formed; this proves the model builds, every checkpoint
fits it, the data set is there and the model's outputs match its labels. It costs one
model build and one data load, which is nothing next to a run and far better than a
failed pod.
"""

from __future__ import annotations

import copy

import torch

from landscape_job.checkpoints import load_into, load_state_dict
from landscape_job.directions import read_direction_file
from landscape_job.errors import UserError
from landscape_job.spec import Spec
from landscape_job.stages import build_centre_model, load_splits


def check_inputs(spec: Spec) -> dict[str, int]:
    """Returns the number of samples in each split; raises UserError naming the input at fault."""
    model = build_centre_model(spec)
    for i, target in enumerate(spec.directions.targets):
        # A copy only to test the fit: the centre's weights are not needed again.
        load_into(copy.deepcopy(model), load_state_dict(target), f"directions.targets[{i}] {target}")
    for i, point in enumerate(spec.directions.trajectory):
        load_into(copy.deepcopy(model), load_state_dict(point), f"directions.trajectory[{i}] {point}")
    if spec.directions.type == "file":
        read_direction_file(spec.directions.file, model, two_d=spec.grid.ndim == 2)
    splits = load_splits(spec)
    with torch.no_grad():
        outputs = model(splits[0].inputs[:2])
    if outputs.ndim != 2 or outputs.shape[1] != splits[0].num_classes:
        raise UserError(f"model.arch: {spec.model.arch} outputs shape {tuple(outputs.shape[1:])} per sample, "
                        f"but {spec.data.dataset} has {splits[0].num_classes} classes")
    return {s.name: len(s.labels) for s in splits}
