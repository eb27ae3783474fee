"""launcher: the user CLI (validate, submit, plot); imports landscape_job, never the reverse."""
