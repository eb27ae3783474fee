"""The floor every other folder stands on: errors and exit codes, strict YAML and the schema
helpers, SIGTERM handling, verbosity, ``python:`` references and the cache folder.

Nothing here imports another folder of the project."""
