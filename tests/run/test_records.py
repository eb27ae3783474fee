"""The records stages hand each other through storage read today's files exactly and write them key for key."""

from __future__ import annotations

import json

import numpy as np

from landscape_job.run.records import Manifest, ProgressRecord, ShardRecord
from landscape_job.run.shards import ShardData, read_shard, shard_bytes

#: manifest.json as the prepare stage wrote it before the records were typed (a run with metrics: hessian).
HESSIAN_MANIFEST = """{
  "run": "file:///runs/random-x",
  "spec_hash": "25aa20203f8127f1486b967b5d01196cd9ae30ee67f1a38c060381888e9f630d",
  "direction_hash": "2ff60e543f32b2c231a0562bbe794ebc310d95ec8ccedf4fe3922bfcbc045b34",
  "dir_type": "weights",
  "tensors": 2,
  "parameters": 21,
  "cosine_xy": -0.05610122755300196,
  "checkpoints": {
    "/work/a.pt": "2607d1d2723f885d9998fb2f25f1007a7f43758b697d0e24f5629947d1da2263"
  },
  "seed": 7,
  "code_version": "0.1.0",
  "torch_version": "2.14.1+cu130",
  "created": "2026-11-29T23:23:48Z",
  "prepare_seconds": 2.396,
  "hessian": {
    "sharpness": 0.4821650070216301,
    "max_eig": 0.4821650070216301,
    "min_eig": 2.0747746642793663e-11,
    "top_eigenvalues": [],
    "trace": 4.48956552182191,
    "trace_stderr": 0.32137809655133776,
    "trace_samples": 2,
    "iterations": 9,
    "converged": true,
    "residual_max": 7.557140518319559e-05,
    "residual_min": 2.2849375164251886e-06,
    "split": "train",
    "samples": 96,
    "ignore": "biasbn",
    "parameters": 18,
    "hessian_vector_products": 11
  }
}"""

#: ... and of a PCA run (no hessian, a pca entry last).
PCA_MANIFEST = """{
  "run": "file:///runs/pca-x",
  "spec_hash": "6ec8b024c6ed4bbac1f87708a9ffe58995a55bfc719375d01de1e3ef1f39c56a",
  "direction_hash": "2f18006df207b575e6a57bff9fb386dcfa3f00bffd621c1042ca9ad0062ede7f",
  "dir_type": "weights",
  "tensors": 2,
  "parameters": 21,
  "cosine_xy": -7.966586720544346e-09,
  "checkpoints": {
    "/work/a.pt": "2607d1d2723f885d9998fb2f25f1007a7f43758b697d0e24f5629947d1da2263",
    "/work/b.pt": "b46ffc0b1253b69fc2b325cd6a3418f88a42c7b1d1cc0e1032eb4a804a662f1a"
  },
  "seed": 0,
  "code_version": "0.1.0",
  "torch_version": "2.14.1+cu130",
  "created": "2026-11-29T23:25:06Z",
  "prepare_seconds": 0.034,
  "pca": {
    "explained_variance": [
      0.6067685915719849,
      0.272322956555201
    ],
    "trajectory": {
      "names": [
        "b.pt",
        "a.pt"
      ],
      "x": [
        0.8310739841671744,
        0.0
      ],
      "y": null,
      "residual": [
        0.5752847252488266,
        0.0
      ]
    }
  }
}"""

#: A shard file's attributes in the order and with the Python types the evaluate stage writes them.
SHARD_ATTRS = {
    "spec_hash": "25aa20203f8127f1486b967b5d01196cd9ae30ee67f1a38c060381888e9f630d",
    "direction_hash": "2ff60e543f32b2c231a0562bbe794ebc310d95ec8ccedf4fe3922bfcbc045b34",
    "shard": 0, "num_shards": 2, "precision": "fp64", "device": "cpu", "host": "vm", "code_version": "0.1.0",
    "attempts": 2, "points_per_forward": 1, "compile_seconds": 0.0, "data_on_device": True, "channels_last": False,
    "elapsed_s": 39.149930477142334, "points_computed": 4, "points_resumed": 6, "seconds_per_point": 3.9082889120999993,
    "hessian_unconverged": 0,
}

PROGRESS = ('{"shard": 0, "num_shards": 2, "done": 10, "total": 10, "rate": 0.2556572299635146, "eta_s": 0.0, '
            '"host": "vm", "device": "cpu", "state": "done", "updated": 1795994668.1454196, "attempt": 1, '
            '"points_per_forward": 1, "compile_seconds": 0.0, "stopped_for": null, "job": null}')


def test_manifests_round_trip_byte_for_byte() -> None:
    for text in (HESSIAN_MANIFEST, PCA_MANIFEST):
        manifest = Manifest.from_json(text)
        assert manifest.to_json() == text.encode()
    manifest = Manifest.from_json(HESSIAN_MANIFEST)
    assert manifest.direction_hash.startswith("2ff60e54") and manifest.pca is None
    assert manifest.hessian["sharpness"] == 0.4821650070216301
    assert manifest.provenance() == {k: json.loads(HESSIAN_MANIFEST)[k] for k in Manifest.PROVENANCE}


def test_an_older_manifest_reads_with_defaults_and_a_newer_one_s_extra_keys_are_ignored() -> None:
    raw = json.loads(PCA_MANIFEST)
    for key in ("torch_version", "checkpoints", "seed"):
        del raw[key]
    raw["written_by_a_newer_version"] = 1
    manifest = Manifest.from_json(json.dumps(raw))
    assert manifest.torch_version is None and manifest.checkpoints == {} and manifest.seed is None
    assert manifest.pca == raw["pca"] and manifest.spec_hash == raw["spec_hash"]


def test_shard_attrs_round_trip_through_hdf5_with_their_types_and_order() -> None:
    data = ShardData(indices=np.arange(3), metrics={"train_loss": np.ones(3)}, attrs=dict(SHARD_ATTRS))
    written = shard_bytes(data)
    record = ShardRecord.from_attrs(read_shard(written, "shard").attrs)
    attrs = record.to_attrs()
    assert list(attrs) == list(SHARD_ATTRS)
    assert attrs == SHARD_ATTRS and [type(v) for v in attrs.values()] == [type(v) for v in SHARD_ATTRS.values()]
    assert shard_bytes(ShardData(indices=data.indices, metrics=data.metrics, attrs=attrs)) == written
    assert record.report_entry()["attempts"] == 2 and record.points_resumed == 6


def test_a_checkpoint_s_record_writes_only_the_keys_known_before_the_shard_finished() -> None:
    partial = {k: v for k, v in SHARD_ATTRS.items() if k not in (
        "elapsed_s", "points_computed", "points_resumed", "seconds_per_point", "hessian_unconverged")}
    assert ShardRecord(**partial).to_attrs() == partial
    assert list(ShardRecord(**partial).to_attrs()) == list(partial)


def test_an_older_shard_reads_missing_attributes_as_none() -> None:
    old = {k: v for k, v in SHARD_ATTRS.items() if k not in ("compile_seconds", "data_on_device", "channels_last",
                                                           "points_per_forward")}
    record = ShardRecord.from_attrs(read_shard(shard_bytes(ShardData(np.arange(1), {}, old)), "old").attrs)
    assert record.compile_seconds is None and record.points_per_forward is None
    assert record.report_entry()["compile_seconds"] is None  # as dict.get gave for report.json


def test_progress_round_trips_and_reads_old_objects() -> None:
    record = ProgressRecord.from_json(PROGRESS)
    assert record.to_json() == PROGRESS.encode()
    assert record.done == 10 and record.state == "done" and record.attempt == 1
    old = ProgressRecord.from_json('{"shard": 1, "num_shards": 2, "done": 3, "total": 5, "rate": null, '
                                   '"eta_s": null, "host": "h", "device": "cuda:0", "state": "running", "updated": 1.0}')
    assert (old.attempt, old.rate, old.points_per_forward, old.compile_seconds) == (1, 0.0, 1, 0.0)
    assert ProgressRecord.from_json("{}").total is None
