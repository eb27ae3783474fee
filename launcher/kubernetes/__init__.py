"""The Kubernetes backend: the `kubernetes:` section, the rendered objects (gated stages,
deadlines), the one seam over the API, and what the cluster says about a run."""
