"""Progress for loops a user waits on (evaluating a test set: 40-130 s): a bar on a terminal,
a few plain lines otherwise (logs, CI), so a long run is never silent."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

__all__ = ["progress"]

T = TypeVar("T")
PLAIN_LINES = 10  # about this many lines for a whole loop when not on a terminal


def progress(
    items: Iterable[T], *, total: int | None, desc: str, stream: TextIO | None = None
) -> Iterator[T]:
    """Yield ``items`` while showing ``desc: i/total`` on ``stream`` (stderr by default)."""
    stream = stream or sys.stderr
    if stream.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=desc, file=stream, leave=False, unit="batch")
        return
    every = max(1, (total or PLAIN_LINES) // PLAIN_LINES)
    start = time.perf_counter()
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        if done % every == 0 or done == total:
            of = f"/{total}" if total else ""
            elapsed = time.perf_counter() - start
            print(f"{desc}: {done}{of} batches ({elapsed:.0f} s)", file=stream, flush=True)
