"""A process's ``/proc/<pid>/stat`` (Linux), read in one place: the lease's holder check and the parent watch."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields after the process's name (``state``, ``ppid``, ... ``starttime`` at index 19), or None
    where there is no such process or no /proc. The name may hold spaces and parentheses: it ends at the
    last ``)``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split() if ")" in stat else None
