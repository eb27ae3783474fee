"""The local backend: the pod entrypoint run as processes on this machine, and the run's record."""
