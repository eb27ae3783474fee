"""``kubectl kustomize`` on a folder of k8s/: its objects, or a skip (a failure in CI) without kubectl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import missing_tool

REPO = Path(__file__).resolve().parents[2]


def kustomize(folder: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing_tool("kubectl is not installed: cannot run `kubectl kustomize` on k8s/ (make kubectl installs it)")
    result = subprocess.run([kubectl, "kustomize", str(REPO / folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
