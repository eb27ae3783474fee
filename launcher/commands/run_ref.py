"""The run argument of the commands that name one run: ``status``, ``wait``, ``logs``, ``cancel``.

Which backend and run it names is decided in ``launcher.backends.choose``: a URL or a
folder is read from storage, a run id in ``./runs`` (the default storage of ``submit
--local``) is that local run unless a cluster flag is given, else the cluster's when there
is a kubeconfig; ``--storage BASE`` reads ``BASE/<id>``.
"""

from __future__ import annotations

import argparse

RUN_HELP = ("a run id (a local run in ./runs/<id>, else on the cluster: -n, --context or --kubeconfig look only "
            "there), the run's folder (runs/<id>) or its storage URL (file:///.../<id>, s3://bucket/prefix/<id>)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run argument and ``--storage``, the same for every command that names one run."""
    parser.add_argument("run", help=RUN_HELP)
    parser.add_argument("--storage", help="read the run from this storage base (folder, file:// or s3:// URL) "
                                          "instead of the cluster: BASE/<run id>")
