"""Files written whole or not at all.

A run can be stopped at any moment (a session ends, a job is killed, the disk fills): a file
written in place would then be left half-written, and a later reader (``from_pretrained``, a
resumed build, ``nodezoo compare``) would fail on it or, worse, read it. Writing to a temporary
file in the same folder and renaming it over the target (``os.replace``, atomic on POSIX and
Windows) leaves either the old file or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the path.

    The temporary file is named after the target and this process, so concurrent writers (DDP
    ranks) never share one; it is removed if writing fails. Permissions follow the umask, as
    ``Path.write_bytes`` does.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
