"""The code's shape: folders that import in one direction only, no import circles, no module
too long to read, and no torch where merge and the launcher run.

Imports inside functions count, and so do ``TYPE_CHECKING`` ones: a circle broken only by
deferring an import, or by hiding it from the interpreter, is still a circle a reader has
to untangle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("landscape_job", "launcher")
MAX_LINES = 500

#: ``landscape_job``'s folders from the bottom up (docs/architecture.md draws them): a module
#: may import its own folder and the floors below it, never above. Folders on one floor do
#: not import each other. The package root (``__version__``) is the bottom; ``cli`` (the pod
#: entrypoint) and ``forkserver`` (which forks it) the top.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("",),
    ("base",),
    ("runtime", "storage"),
    ("inputs",),
    ("spec",),
    ("run",),
    ("datasets", "models"),
    ("surface",),
    ("plots",),
    ("outputs",),
    ("series",),
    ("stages",),
    ("checks", "api"),
    ("cli",),
    ("forkserver",),
)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()

    def resolve(name: str) -> None:
        # ``from a.b import c`` may name module a.b.c or attribute c of a.b.
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            targets.add(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                resolve(f"{base}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # A package's __init__ is run by importing any module inside it; an edge to a
    # submodule is not an edge back to its package.
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                strongconnect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_the_cycle_finder_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_counts_function_local_and_type_checking_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from landscape_job.run import records\n"
                      "def f():\n    from landscape_job.spec import grid\n    import landscape_job.spec.sections\n")
    known = {"landscape_job.spec.grid", "landscape_job.spec.sections", "landscape_job.run.records", "landscape_job"}
    assert _imports("x.m", source, known) == known - {"landscape_job"}


def _floor(module: str) -> int:
    folder = module.split(".")[1] if module.count(".") else ""
    for level, folders in enumerate(FLOORS):
        if folder in folders:
            return level
    raise AssertionError(f"{module}: its folder {folder!r} is on no floor of FLOORS (tests/architecture/test_architecture.py)")


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a higher floor, or of another folder of the same floor."""
    bad = []
    for module, targets in graph.items():
        if not module.startswith("landscape_job"):
            continue
        here = module.split(".")[1] if module.count(".") else ""
        for target in targets:
            if not target.startswith("landscape_job"):
                continue
            there = target.split(".")[1] if target.count(".") else ""
            if there != here and _floor(target) >= _floor(module):
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_the_floor_check_sees_an_upward_import():
    graph = {"landscape_job.spec.grid": {"landscape_job.surface.evaluator"},
             "landscape_job.surface.evaluator": {"landscape_job.spec.grid"},
             "landscape_job.datasets.builtin": {"landscape_job.models.checkpoints"}}
    assert _upward(graph) == ["landscape_job.datasets.builtin -> landscape_job.models.checkpoints",
                              "landscape_job.spec.grid -> landscape_job.surface.evaluator"]


@pytest.mark.slow
def test_folders_import_downward_only():
    for module in _modules():
        if module.startswith("landscape_job"):
            _floor(module)
    bad = _upward(_graph())
    assert not bad, "imports against the floors (docs/architecture.md): " + "; ".join(bad)


@pytest.mark.parametrize("entry", ["landscape_job.stages.merge_stage", "landscape_job.series.merge", "launcher.cli",
                                   "launcher.api", "landscape_job.spec"])
def test_merge_and_the_launcher_never_import_torch(entry):
    """Merge runs in a small CPU pod and the launcher on a laptop: importing torch costs seconds
    and a GPU image. Checked by importing in a clean interpreter, so lazy faces count too."""
    code = f"import sys, {entry}; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", f"importing {entry} imports {out.stdout.strip()}"


@pytest.mark.parametrize("command", [["validate"], ["submit", "--local"]])
def test_a_spec_refused_before_its_inputs_are_read_imports_no_torch(command, tmp_path):
    """A spec mistake is one line in a fraction of a second: torch comes with the inputs' check (the model
    built, the data loaded), after the spec has parsed, not before it (~1.7 s of CPU for a typo)."""
    spec = tmp_path / "typo.yaml"
    spec.write_text("name: typo\nmodel: {arch: mlp}\ndata: {dataset: digits}\ngrdi: {x: '-1:1:3'}\n")
    code = ("import sys; from launcher.cli import main\ntry: code = main(sys.argv[1:])\nexcept SystemExit as e: code = e.code\n"
            "print(code, sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *command[:1], str(spec), *command[1:], "--storage",
                          str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "grdi" in out.stderr and out.stdout.split() == ["2", "[]"], (out.stdout, out.stderr)
    assert not (tmp_path / "runs").exists()


def test_a_static_validate_of_a_valid_spec_imports_no_torch(tmp_path):
    """``validate --static`` checks what needs no code of the spec's and no inputs (a CI lint step, a pre-commit
    hook): its whole report, the work and precision lines included, comes without torch (~2.5 s of CPU)."""
    code = ("import sys; from launcher.cli import main\ntry: code = main(sys.argv[1:])\nexcept SystemExit as e: code = e.code\n"
            "print(code, sorted(m for m in ('torch', 'torchvision') if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, "validate", "--static", str(ROOT / "examples" / "digits.yaml")],
                         capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stderr.split() == ["0", "[]"], (out.stdout, out.stderr)
    assert "# work:" in out.stdout and "precision: fp32: float32 throughout" in out.stdout, out.stdout


@pytest.mark.parametrize("entry", ["landscape_job.stages.merge_stage", "landscape_job.outputs.exports",
                                   "landscape_job.plots.options"])
def test_merge_imports_matplotlib_only_to_draw_figures(entry):
    """A merge whose spec asks for no figure (``plot.formats: [vtp]``, or ``[html]``) writes the exports and the
    report without matplotlib (0.5 s of CPU per merge): the package face of ``plots`` must not import it."""
    code = f"import sys, {entry}; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", f"importing {entry} imports matplotlib"


#: What a plain plane through the Python API never needs: importing any of them is a first call's fixed cost
#: for nothing (docs/performance.md, the API against loss-landscapes). h5py comes with ``save()`` or ``.data``
#: (the plane is read in memory, its file written when asked for); the shard and progress records, the https
#: retry loop and the model zoo's registry with the stages and families that use them.
NOT_ON_THE_APIS_PATH = ("yaml", "matplotlib", "boto3", "h5py", "html", "landscape_job.stages.merge_stage",
                        "landscape_job.series.merge", "landscape_job.surface.curvature", "landscape_job.surface.pca",
                        "landscape_job.models.vgg", "landscape_job.models.checkpoints", "landscape_job.datasets.tokens",
                        "landscape_job.models.hf", "landscape_job.run.records", "landscape_job.inputs.web",
                        "landscape_job.storage.retry", "landscape_job.models.registry")


@pytest.mark.slow
def test_the_apis_first_plane_imports_only_what_it_uses():
    """A new process's first ``ls.plane`` imports no YAML, plots, HDF5, S3, merge stage, Hessian, PCA, model zoo or
    token data, and with ``progress=False`` starts no tqdm monitor thread: checked in a clean interpreter after a
    real (tiny) plane, so lazy imports count. Saving it then imports h5py (the check is live) and writes its file."""
    code = ("import sys, tempfile, torch, tqdm; from landscape_job import api as ls; torch.manual_seed(0); "
            "m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)); "
            "p = ls.plane(m, (torch.randn(20, 4), torch.randint(0, 3, (20,))), x='-1:1:3', y='-1:1:3', "
            "progress=False); assert p['train_loss'].shape == (3, 3); "
            f"print(sorted(n for n in {NOT_ON_THE_APIS_PATH!r} if n in sys.modules), tqdm.tqdm.monitor); "
            "p.save(tempfile.mkdtemp() + '/surface.h5'); print('h5py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.splitlines() == ["[] None", "True"], f"the API's first plane imports {out.stdout.strip()}"


def test_no_import_circles():
    cycles = _cycles(_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.slow
def test_landscape_job_never_imports_launcher():
    graph = _graph()
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith("landscape_job")
                 for t in ts if t.startswith("launcher"))
    assert not bad, bad


def test_no_module_over_the_line_limit():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
