"""``launcher estimate surface.yaml``: the measurement lives in ``landscape_job.checks.estimate`` so that
the pod entrypoint can run it too (``launcher estimate --cluster``); re-exported here."""

from landscape_job.checks.estimate import Estimate, describe, estimate, from_log

__all__ = ["Estimate", "describe", "estimate", "from_log"]
