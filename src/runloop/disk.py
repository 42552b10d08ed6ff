"""The disk under a folder: whether a write failed for want of room, how much room is left, how much a folder holds.

    full(exc)          the OSError in an exception's chain that says a disk (or a file-size limit) ran out, or None
    held(folder)       how many bytes the files under a folder hold
    mount_point(path)  the folder the file system holding `path` is mounted at
    size(n)            a byte count as people read it: 812.0 KiB, 3.4 GiB

Standard library only: the process that runs DVC asks these after DVC failed, and must not fail in turn.
"""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

# Out of room: the file system is full, the user's quota is, or a file grew beyond this process's limit (ulimit -f).
FULL = (errno.ENOSPC, errno.EDQUOT)
TOO_LARGE = errno.EFBIG


def full(exc: BaseException | None) -> OSError | None:
    """The OSError among `exc`, its causes and contexts, whose errno says a disk or a file-size limit ran out."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (*FULL, TOO_LARGE):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def held(folder: Path) -> int:
    """The bytes the files under `folder` hold (symbolic links not followed; what cannot be read counts 0)."""
    total = 0
    stack = [str(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def mount_point(path: Path) -> Path:
    """The folder the file system holding `path` is mounted at (the nearest folder that exists, when it does not)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def free(path: Path) -> tuple[int, int]:
    """The bytes free (for this user) and in all on the file system holding `path`."""
    stat = os.statvfs(mount_point(path))
    return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize


def file_size_limit() -> int | None:
    """The largest file this process may write (ulimit -f), in bytes; None when there is no limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def size(n: float) -> str:
    """`n` bytes as people read them: 512 B, 812.0 KiB, 3.4 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
