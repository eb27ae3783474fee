"""landscape_job: everything that runs inside a pod (directions, evaluator, shards, merge, plots).

This package never imports ``launcher`` and needs no Kubernetes client.
"""

__version__ = "0.1.0"
