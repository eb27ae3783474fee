"""What runs before a run: the cost estimate and the preflight (a spec's model, data and
directions built once on this machine)."""
