"""Timing, memory and table helpers shared by the benchmark scripts.

Timings interleave the contenders round-robin (A, B, C, A, B, C, ...) so that load from other
processes on a shared machine hits every contender alike, and report medians. Memory is the
peak growth of bytes held by PyTorch's allocator during one call, measured the same way for
every library (see benchmarks/README.md for why this and not RSS).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,  # what a user waits for
    # This process's CPU time: on a shared machine a long call is always preempted while a
    # short one often fits in one time slice, which biases wall-time ratios; CPU time is not.
    "cpu": time.process_time,
}


def get_clock(name: str) -> Callable[[], float]:
    if name not in CLOCKS:
        raise ValueError(f"clock={name!r} is not one of {sorted(CLOCKS)}.")
    return CLOCKS[name]


def calls_per_sample(fn: Callable[[], object], clock: Callable[[], float], target_s: float) -> int:
    """How many back-to-back calls of ``fn`` take about ``target_s``: very short calls are
    timed in loops so the clock's resolution and call jitter do not dominate."""
    n = 1
    while True:
        start = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - start
        if elapsed >= target_s or n >= 1 << 20:
            return n
        n = n * 2 if elapsed <= 0 else max(n + 1, int(n * 1.2 * target_s / elapsed))


def per_call(fn: Callable[[], object], n: int) -> Callable[[], object]:
    """``fn`` run ``n`` times per call; divide its time by ``n``."""

    def run():
        for _ in range(n):
            fn()

    return run


def time_round_robin(
    runners: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int,
    divisors: dict[str, int] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per call of each runner on every clock (``{clock: {runner: samples}}``),
    ``repeats`` samples each, taken in interleaved rounds after ``warmup`` untimed rounds.
    ``divisors[name]`` divides that runner's samples (for runners built with ``per_call``)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    divisors = divisors or {}
    for _ in range(warmup):
        for fn in runners.values():
            fn()
    samples: dict[str, dict[str, list[float]]] = {c: {n: [] for n in runners} for c in CLOCKS}
    for _ in range(repeats):
        for name, fn in runners.items():
            start = {c: clock() for c, clock in CLOCKS.items()}
            fn()
            for c, clock in CLOCKS.items():
                samples[c][name].append((clock() - start[c]) / divisors.get(name, 1))
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def peak_memory_growth(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by PyTorch during ``fn()`` above what was allocated when it began.

    CUDA: the caching allocator's own counters. CPU: PyTorch has no CPU allocator counters, so
    run ``fn`` under ``torch.profiler`` with ``profile_memory=True``; every allocation and free
    through PyTorch's CPU allocator is recorded with the running total of bytes, and the answer
    is the peak of that total during the call. Exact and deterministic (same bytes every run),
    unlike RSS, which glibc's arenas and lazily touched pages blur.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    if device.type != "cpu":
        raise ValueError(f"memory measurement supports cpu and cuda devices, not {device}.")
    return _profiled_cpu_peak(fn)


_MARK = "_measure.measured_call"


def _profiled_cpu_peak(fn: Callable[[], object]) -> int:
    """The profiler cannot see frees of blocks allocated before it started, so ``fn`` runs
    twice in one session and only the second call counts: what it frees of the first call's
    leftovers (a reused buffer swapped for a new one, say) is then subtracted as it should be."""
    # The event tree is torch's own (private) memory-profiler input; fail loudly if it moves.
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile, record_function
    except ImportError as exc:  # pragma: no cover - depends on the torch version
        raise RuntimeError(
            f"torch {torch.__version__} lacks the profiler internals used to measure CPU "
            "memory; run with --no-memory or on CUDA."
        ) from exc
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
        with record_function(_MARK):
            fn()
    allocations, window = [], None
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            extra = node.extra_fields
            allocations.append((node.start_time_ns, extra.alloc_size, extra.total_allocated))
        elif node.name == _MARK:
            window = (node.start_time_ns, node.end_time_ns)
        stack.extend(node.children)
    if window is None:
        raise RuntimeError("the profiler lost the measured call's marker; use --no-memory.")
    events = sorted(e for e in allocations if window[0] <= e[0] <= window[1])
    if not events:
        return 0
    _, first_size, first_total = events[0]
    baseline = first_total - first_size  # the running total just before the call
    return max(0, max(total for _, _, total in events) - baseline)


def machine_description() -> str:
    """CPU model and core count, for the header of a results table."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPU(s)"


def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def format_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
