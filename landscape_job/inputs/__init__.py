"""Fetching what a spec names (local paths, ``s3://``, ``https://``) into the local cache,
pinned by sha256."""
