"""A full disk (ENOSPC) or an exhausted quota (EDQUOT): one line naming the path and the space needed.

Every write of a run (a storage object, a log, a plot, the input cache) can meet a full
file system. That is not a bug and not the user's typo: it is exit 1, a failure that a
retry heals once space is freed, and the resume is bit-identical because every object is
written whole (a temporary file moved into place; the temporary removed on failure).
``landscape_job.cli.run_guarded`` turns any such ``OSError`` into this line; the folder
storage raises :class:`NoSpace` itself, with the size of the object it was writing.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from landscape_job.base.errors import StageError

#: The errors that mean "no room", not "no permission" or "no such file".
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in FULL_ERRNOS


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing folder); None if unknown."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class NoSpace(StageError):
    """No room to write ``path``: exit 1, and the run resumes once space is freed."""

    def __init__(self, path: str | Path, needed: int | None = None, quota: bool = False, free: int | None = None):
        free = free if free is not None else free_bytes(path)
        what = "disk quota exceeded" if quota else "no space left on device"
        need = f"{size_text(needed)} needed" if needed is not None else "more space needed"
        have = f", {size_text(free)} free" if free is not None else ""
        super().__init__(f"{what} writing {path}: {need}{have}; free space there and resume (nothing partial "
                         f"was kept)")
        self.path, self.needed = str(path), needed


def no_space(err: OSError, path: str | Path | None = None, needed: int | None = None) -> NoSpace:
    """The :class:`NoSpace` for an ENOSPC/EDQUOT ``err`` met writing ``path`` (default: the error's file)."""
    where = path if path is not None else (err.filename or "a file")
    return NoSpace(where, needed, quota=err.errno == errno.EDQUOT)


def check_room(path: str | Path, needed: int, what: str) -> None:
    """Raises :class:`NoSpace` before writing ``what`` (``needed`` bytes) when the file system has less free."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise NoSpace(f"{path} ({what})", needed, free=free)
