"""``launcher estimate surface.yaml``: the measurement lives in ``landscape_job.estimate`` so that
the pod entrypoint can run it too (``launcher estimate --cluster``); re-exported here."""

from landscape_job.estimate import Estimate, describe, estimate, from_log

__all__ = ["Estimate", "describe", "estimate", "from_log"]
