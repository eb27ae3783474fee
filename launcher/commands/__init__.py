"""The commands that talk to a cluster, or read a run's storage: one module per command.

Each command module has ``NAME``, ``add_parser(subparsers)`` and ``run(args)``;
``launcher.cli`` wires them into the one parser. What several of them share lives in
``cluster_run`` (reaching a run on the cluster and in storage) and ``views`` (what they print,
as pure functions); the pure readers of the server's objects are ``launcher.kubernetes.job_state``.
"""
