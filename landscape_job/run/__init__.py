"""The objects of one run's storage prefix: their keys, the manifest and shard records, shard
files and their segments, inputs pinned by sha256. Stages talk to each other only through
these."""
