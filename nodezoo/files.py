"""Files written whole or not at all.

A run can be stopped at any moment (a session ends, a job is killed, the disk fills): a file
written in place would then be left half-written, and a later reader (``from_pretrained``, a
resumed build, ``nodezoo compare``) would fail on it or, worse, read it. Writing to a temporary
file in the same folder and renaming it over the target (``os.replace``, atomic on POSIX and
Windows) leaves either the old file or the new one.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


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


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """``fig.savefig(path)`` written atomically (a matplotlib figure; the format from the
    file's suffix, as matplotlib itself would choose it). Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or None, **savefig_kwargs)
    return write_atomic(path, buffer.getvalue())


def write_csv_atomic(
    path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[dict[str, Any]]
) -> Path:
    """A CSV file with a header row (``csv.DictWriter``), written atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue())
