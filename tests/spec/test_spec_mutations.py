"""Property: every example spec, mutated hundreds of ways, is either accepted and runs, or refused
by both ``launcher validate`` and ``launcher submit --local`` alike: exit 2, the same one line,
no traceback, nothing written (issue 13, "what it must show").

How it stays fast enough to run with the suite (about a minute for 3,500 mutations):

* ``validate`` and ``submit --local`` are called in-process (``launcher.cli.main``, stderr
  captured), not as subprocesses: a refusal costs milliseconds, a process start a second.
* Every mutation is validated in full (strict YAML, every key, the kubernetes section, the
  inputs: model build, checkpoints, data). A refused one is then submitted too, which must
  refuse with the very same line, before writing anything (the folder is compared file by
  file). ``submit --local`` of an accepted one would compute the whole surface, so:
* "accepted and runs" is checked on a sample: after the mutations, a few accepted ones
  per example (the first, and any that changed a key that changes the numbers) run all
  three stages in-process on a 2-point grid with one shard. The grid size and shard count
  are the only keys changed; they are also the keys whose every mistake the spec checks
  without running anything (grid.x/y, compute.shards).
* The two cifar10 examples keep their inputs on pod volumes and in S3, which this machine
  cannot read: their mutations are checked at the spec level (``validate --quick`` against
  ``submit --local``, which refuses the same spec mistakes before touching S3); an
  accepted one is not run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landscape_job.models import build_model
from landscape_job.spec.parse import load_spec
from launcher.kubernetes.section import parse_kubernetes
from launcher.cli import main as launcher

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOCAL = ["digits.yaml", "digits-hessian.yaml", "digits-interp.yaml", "digits-pca.yaml", "custom-data.yaml"]
REMOTE = ["cifar10-resnet56.yaml", "cifar10-s3.yaml"]
MUTATIONS = int(os.environ.get("LANDSCAPE_MUTATIONS", "500"))

SPECIAL_STRINGS = ["", "x" * 5000, "../../x", "/proc/self", "/dev/null", "/etc/passwd", "s3://b/../../x", "auto",
                   "cuda", "cpu", "fp64", "bf16", "python:os:system", "file:///etc", "-1:1:0", "0:0:1", "1:-1:5",
                   "nan:1:3", "-1:1:99999999", "-1e40:1:3", "-0.5:0.5:3", "weights", "states", "none", "filter",
                   "hessian", "train", "test", "random", "pca", "plane", "file", "interpolate", "s3://b/k",
                   "checkpoints/digits-cnn-b.pt", "checkpoints/nope.pt", "ÿ\x00\u202e", "{a: 1}", "*a", "&a"]
VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2, 3, 64, 2**31, 2**63 - 1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-3, -0.0, 1e308]),
    st.text(max_size=12), st.sampled_from(SPECIAL_STRINGS),
    st.lists(st.sampled_from(["loss", "accuracy", "hessian", "train", "test", 1, None]), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 3), max_size=2),
)


def _digits_inputs(folder: Path) -> None:
    """The checkpoints the digits examples name, as examples/train_digits.py lays them out (untrained)."""
    ck = folder / "checkpoints"
    (ck / "trajectory").mkdir(parents=True)
    for i, path in enumerate([ck / "digits-cnn-a.pt", ck / "digits-cnn-b.pt",
                              *(ck / "trajectory" / f"epoch_{e}.pt" for e in (2, 4, 6))]):
        torch.manual_seed(i)
        torch.save(build_model("cnn", 10, (1, 8, 8), {}).state_dict(), path)
    shutil.copytree(EXAMPLES / "custom_data", folder / "custom_data")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mutations")
    _digits_inputs(folder)
    return folder


def _call(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = launcher(argv)
    except BaseException:  # noqa: BLE001 - a traceback is exactly what the property forbids
        return -1, traceback.format_exc()
    return code, err.getvalue()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _paths(v, prefix + (i,))
    return found


def _mutated_tree(tree: dict, data: st.DataObject) -> dict:
    tree = copy.deepcopy(tree)
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        paths = [p for p in _paths(tree) if p]
        path = data.draw(st.sampled_from(paths), label="path")
        *parents, last = path
        node = tree
        for key in parents:
            node = node[key]
        op = data.draw(st.sampled_from(["set", "set", "set", "delete", "add", "swap"]), label="op")
        leaves = [p for p in paths if not isinstance(_at(tree, p), (dict, list))]
        if op == "set":
            node[last] = data.draw(VALUES, label="value")
        elif op == "delete":
            del node[last]
        elif op == "add" and isinstance(node[last], dict):
            node[last][data.draw(st.text(min_size=1, max_size=10), label="new key")] = data.draw(VALUES)
        elif op == "swap" and leaves:  # another key's value: mistakes that look plausible
            node[last] = copy.deepcopy(_at(tree, data.draw(st.sampled_from(leaves), label="from")))
    return tree


def _at(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _mutated_text(text: str, tree: dict, data: st.DataObject) -> str:
    """Text-level mutations the tree cannot express, else a dump of a mutated tree."""
    kind = data.draw(st.sampled_from(["tree"] * 6 + ["duplicate", "truncate", "insert", "bomb", "deep", "anchor"]),
                     label="kind")
    if kind == "tree":
        # libyaml's emitter: the pure-Python one was a tenth of this test's CPU
        return yaml.dump(_mutated_tree(tree, data), Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True)
    lines = text.splitlines(keepends=True)
    if kind == "duplicate":
        top = [line for line in lines if line[:1].isalpha()]
        return text + data.draw(st.sampled_from(top), label="line")
    if kind == "truncate":
        return text[:data.draw(st.integers(0, len(text)), label="at")]
    if kind == "insert":
        at = data.draw(st.integers(0, len(text)), label="at")
        return text[:at] + data.draw(st.sampled_from(list(":-[]{}&*!|>'\"#%@`\t\n ") + ["\x00", "\ufeff"])) + text[at:]
    if kind == "bomb":
        bomb = "".join(f"{a}: &{a} [{', '.join([f'*{p}'] * 9) if p else 'lol'}]\n"
                       for p, a in zip(["", "b0", "b1", "b2", "b3", "b4"], ["b0", "b1", "b2", "b3", "b4", "b5"]))
        return bomb + text.replace("\nname:", "\nname: *b5\nx_name:", 1)
    if kind == "deep":
        depth = data.draw(st.sampled_from([10, 63, 65, 1000, 30000]), label="depth")
        return text + "plot: " + "[" * depth + "]" * depth + "\n"
    return "x: &a {shards: 2}\n" + text.replace("compute:\n", "compute:\n  <<: *a\n", 1)


def _check(example: str, workspace: Path, text: str, deep: dict, accepted: list[str]) -> None:
    path = workspace / "surface.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = _files(workspace)
    try:
        spec = load_spec(path)  # the spec level alone: what both commands read first (~10 ms) ...
        parse_kubernetes(spec.kubernetes)  # ... with its kubernetes section
        parsed = True
    except BaseException:  # noqa: BLE001 - a refusal, or a bug that validate below reports
        parsed = False
    if parsed:
        deep["spec_accepted"] += 1
        if deep["budget"] <= 0:
            return  # accepted by the spec; its inputs are checked on a sample (see the module docstring)
        deep["budget"] -= 1
    code, err = _call(["validate", str(path)])
    assert code in (0, 2), f"{example}: validate: exit {code}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert _files(workspace) == before, f"{example}: validate wrote {_files(workspace) - before}"
    if code == 0:
        accepted.append(text)
        return
    deep["refused"] += 1
    # Every static mistake one line each (validate lists them all), then what they kept from being checked.
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("launcher: error: ")]
    notes = [line for line in lines if line.startswith("launcher: note: ")]
    assert errors and lines == errors + notes and all(len(line) <= 2100 for line in lines), err[:3000]
    code, submit_err = _call(["submit", str(path), "--local"])
    assert code == 2 and submit_err == err, f"{example}: submit --local: exit {code}\n{submit_err[-3000:]}\n{err}"
    assert _files(workspace) == before, f"{example}: submit --local wrote {_files(workspace) - before}"


def _runs(workspace: Path, text: str) -> None:
    """An accepted spec runs: prepare, its one shard and merge with its plots, on a 2-point grid; its other
    values (batch size, plot levels, checkpoint intervals, ...) are kept as the mutation left them."""
    from landscape_job import stages
    from launcher.local.runner import open_run

    tree = yaml.safe_load(text)
    grid = tree["grid"]
    grid["x"] = "-0.1:0.1:2"
    if grid.get("y") is not None:
        grid["y"] = "0:0:1"
    tree.setdefault("compute", {})
    tree["compute"] = dict(tree["compute"] or {}, shards=1)
    if "hessian" in (tree.get("metrics") or []) or "hessian" in str(tree.get("directions")):
        tree.setdefault("hessian", {})
        tree["hessian"] = dict(tree["hessian"] or {}, iterations=4, subset=32)
    tree["storage"] = str(workspace / "sample-runs")
    path = workspace / "sample.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    spec = load_spec(path)
    run = open_run(spec, f"s{abs(hash(text)) % 10**8}")
    quiet = lambda _msg: None  # noqa: E731
    stages.prepare(run, log=quiet)
    stages.evaluate(run, 0, log=quiet)
    stages.merge(run, log=quiet, plots=True)  # the plot section's values are drawn, not only parsed
    assert run.exists("surface.h5") and run.exists("report.json")


#: Accepted mutations per local example run through merge (validate = run): the first, then those that
#: changed a value of compute, plot or hessian, whose mistakes used to surface only after the compute.
RUN_SAMPLE = int(os.environ.get("LANDSCAPE_MUTATION_RUNS", "3"))


def _run_sample(tree: dict, accepted: list[str]) -> list[str]:
    changed = [text for text in accepted[1:]
               if any((yaml.safe_load(text) or {}).get(key) != tree.get(key) for key in ("compute", "plot", "hessian"))]
    return (accepted[:1] + changed)[:RUN_SAMPLE]


#: Mutations per local example that the spec accepts and that are then checked in full (inputs
#: too, ~0.5 s each: model build, data load); the rest of those stop at the spec level.
DEEP = 6


@pytest.mark.slow
@pytest.mark.parametrize("example", LOCAL + REMOTE)
def test_every_mutation_is_accepted_and_runs_or_refused_alike(example: str, workspace: Path) -> None:
    text = (EXAMPLES / example).read_text()
    tree = yaml.safe_load(text)
    remote = example in REMOTE
    accepted: list[str] = []
    deep = {"budget": 0 if remote else DEEP, "spec_accepted": 0, "refused": 0, "n": 0}

    @settings(max_examples=MUTATIONS, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def mutate(data: st.DataObject) -> None:
        deep["n"] += 1
        _check(example, workspace, _mutated_text(text, tree, data), deep, accepted)

    old = os.getcwd()
    os.chdir(workspace)  # a spec without storage means ./runs here: nothing may appear
    try:
        mutate()
    finally:
        os.chdir(old)
    print(f"{example}: {deep['n']} mutations, {deep['refused']} refused by both, "
          f"{deep['spec_accepted']} accepted by the spec, {len(accepted)} accepted in full")
    assert deep["n"] >= MUTATIONS and deep["refused"] >= MUTATIONS // 4
    if remote:
        return
    assert accepted, f"{example}: no mutation was accepted in full; the generator is too hostile"
    for text in _run_sample(tree, accepted):
        _runs(workspace, text)
