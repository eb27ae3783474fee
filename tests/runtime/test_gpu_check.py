"""benchmarks/gpu_check.sh, the part a CPU can run: the pipeline end to end (--smoke), and its loud failures.

On a GPU machine the script runs tests/runtime/test_gpu.py and the ResNet-56 benchmark; here the
smoke mode runs the same benchmark and row code on a tiny model on the CPU, so a broken
script is found before a GPU is lent. Without a usable CUDA device the real mode must stop
at once, saying why; a benchmark that crashes must fail the script, not leave a quiet row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
HEADER = "| model, data, GPU | precision | ceiling (s/pass) | evaluator (s/point) | ratio | deviation from fp32 | peak memory |"

LM_HEADER = "| model, tokens a point, GPU | directions | setup (s) | s/point | tokens/s | peak memory | MFU |"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PY": sys.executable, **env})


@pytest.mark.slow
def test_the_smoke_run_prints_a_row_per_precision_from_real_measurements() -> None:
    # One precision other than fp32 (its deviation needs the fp32 reference too); seconds on a CPU.
    result = _run("--smoke", PRECISIONS="tf32")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER and lines[1] == "|---|---|---|---|---|---|---|" and len(lines) == 8
    number = r"\d+\.\d{4}"
    assert re.fullmatch(rf"\| resnet8, 32 CIFAR-shaped images, CPU \(smoke run, not a measurement\) \| "
                        rf"tf32 \| {number} \| {number} \| \d+\.\d{{3}} \| \d\.\d\de[-+]\d\d \| \d+ MiB \|",
                        lines[2]), lines[2]
    # TF32 changes nothing on a CPU: the deviation from the fp32 reference (the same weights) is ~0.
    # Two random initialisations of this model differ by ~3e-3, which is what a wrong reference showed.
    assert float(lines[2].split("|")[6]) < 1e-4, lines[2]
    assert "gpu_check: done in" in result.stderr
    # The language-model rows (issue 23): seeded directions and a direction file, measured.
    assert lines[3] == "" and lines[4] == LM_HEADER and lines[5] == "|---|---|---|---|---|---|---|"
    for line, directions in zip(lines[6:], ("seeded", "file")):
        assert re.fullmatch(rf"\| tiny llama-style, 2 x 32 tokens, CPU \(smoke run, not a measurement\) \| "
                            rf"{directions} \| \d+\.\d \| \d+\.\d{{4}} \| [\d,]+ \| [\d,]+ MiB \| n/a \|", line), line
    assert "direction file: " in result.stderr and "setup (seeded directions)" in result.stderr


@pytest.mark.slow
def test_a_crashing_benchmark_fails_the_check_and_its_row_says_so() -> None:
    result = _run("--smoke", PRECISIONS="fp32", MODEL="no_such_model", LM="0")
    assert result.returncode == 1
    assert "failed (no ceiling" in result.stdout.splitlines()[-1]
    assert "gpu_check: the fp32 benchmark failed (exit 1)" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_a_gpu_the_check_stops_at_once_saying_why() -> None:
    result = _run()
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.startswith("gpu_check: no usable CUDA device: ") and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_hidden_devices_stop_the_check_too() -> None:
    """Runs on a GPU machine as well: its devices hidden, the check must not go on."""
    hidden = _run(CUDA_VISIBLE_DEVICES="")
    why = "is built without CUDA" if torch.version.cuda is None else "CUDA_VISIBLE_DEVICES='' hides every GPU"
    assert hidden.returncode == 3 and why in hidden.stderr and hidden.stdout == ""


def test_an_unknown_option_is_refused() -> None:
    result = _run("--dry")
    assert result.returncode == 2 and "usage: benchmarks/gpu_check.sh [--smoke]" in result.stderr


def test_a_language_model_row_without_its_numbers_says_failed() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    from gpu_rows import lm_row

    assert lm_row("Traceback ...\nRuntimeError: CUDA out of memory", "llama", "file") == \
        "| llama | file | failed (no setup, point, tokens, memory, mfu in the output) | | | | |"
    good = "setup (file directions): 12.5 s\nlm: 0.0810 s/point\nlm tokens/s: 202,271\nlm peak memory: 9,120 MiB (device)\nlm MFU: 41.2%"
    assert lm_row(good, "llama", "file") == "| llama | file | 12.5 | 0.0810 | 202,271 | 9,120 MiB | 41.2% |"


def test_fetch_wheels_lists_what_the_check_needs_beyond_torch() -> None:
    script = SCRIPT.parent / "fetch_wheels.sh"
    env = {**os.environ, "PY": sys.executable}
    listed = subprocess.run(["bash", str(script), "--list"], capture_output=True, text=True, env=env, timeout=60)
    names = listed.stdout.split()
    assert listed.returncode == 0 and {"numpy", "h5py", "pyyaml", "safetensors", "pytest"} <= set(names)
    assert not {"torch", "torchvision", "boto3"} & set(names)
    everything = subprocess.run(["bash", str(script), "--list"], capture_output=True, text=True, timeout=60,
                                env={**env, "ALL": "1"}).stdout.split()
    assert {"boto3", "scikit-learn"} <= set(everything) and "torch" not in everything
    wrong = subprocess.run(["bash", str(script), "--dry"], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 2 and "usage: benchmarks/fetch_wheels.sh" in wrong.stderr
