"""``launcher render surface.yaml --slurm``: the run's three batch scripts and the ``sbatch`` lines.

Everything else a Slurm run does goes through the backend interface
(``launcher.slurm.backend.SlurmBackend``), as for the other backends.
"""

from __future__ import annotations

import argparse

from launcher.slurm.backend import render
from launcher.slurm.render import sbatch_lines


def render_scripts(args: argparse.Namespace) -> None:
    """The scripts, each under a ``# ---- <stage>.sbatch`` line, then the commands to submit them by hand."""
    from landscape_job.spec.parse import load_spec

    from launcher.kubernetes.render_cli import default_run_id

    spec = load_spec(args.spec, storage_override=args.storage, check_files=False)
    scripts = render(spec, args.run_id or default_run_id(spec.name))
    for script in scripts.scripts:
        print(f"# ---- {script.file_name}\n{script.text}")
    print("# ---- submit them by hand (the launcher writes spec.yaml to the run's storage first; prepare seeds it "
          "from its script otherwise):", *sbatch_lines(scripts), sep="\n")
