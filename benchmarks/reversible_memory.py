"""Training memory of a ResNet stage vs a RevNet stage as depth grows.

Prints a Markdown table, per depth: bytes autograd saves for backward (counted exactly with
``torch.autograd.graph.saved_tensors_hooks``), the peak memory of one forward+backward above
the model and input, and its time. On CPU the peak is the growth of the process's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs``) over a second, warm step, in a forked child
per measurement, with glibc's mmap threshold pinned at 64 KiB so freed tensors leave the RSS:
rough (allocator-dependent) but real; on CUDA it is ``torch.cuda.max_memory_allocated``.

    python benchmarks/reversible_memory.py --depths 1,2,4,8,16,32
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pickle
import statistics
import time

import torch

from nodezoo.models.backbones import CONV_STAGES

KINDS = ("resnet", "revnet")
MB = 2**20


def saved_bytes(stage: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for backward (a tensor saved by two ops
    counts once)."""
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stage(x)
    return sum(storages.values())


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _pin_mmap_threshold() -> None:
    """Serve every allocation >= 64 KiB by mmap so its memory returns to the OS when freed
    (glibc otherwise raises the threshold and keeps freed tensors in its heap)."""
    m_mmap_threshold = -3
    ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 64 * 1024)


def _train_step(stage, x):
    stage(x).square().mean().backward()


def measure(kind: str, depth: int, args) -> dict:
    """Peak memory (first step, cold), saved bytes and median step time for one stage."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    stage = CONV_STAGES[kind](args.width, depth, None, 0).to(device)
    x = torch.randn(args.batch, args.width, args.size, args.size, device=device)
    x.requires_grad_(True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _train_step(stage, x)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        _train_step(stage, x)  # warm-up: one-off buffers and caches are not activations
        stage.zero_grad(set_to_none=False)
        x.grad = torch.zeros_like(x)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS counter to the current RSS
        base = _proc_status_bytes("VmRSS")
        _train_step(stage, x)
        peak = _proc_status_bytes("VmHWM") - base
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _train_step(stage, x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {
        "saved": saved_bytes(stage, x),
        "peak": peak,
        "time": statistics.median(times),
        "params": sum(p.numel() for p in stage.parameters()),
    }


def measure_isolated(kind: str, depth: int, args) -> dict:
    """On CPU, measure in a forked child so each peak starts from a clean process."""
    if args.device != "cpu":
        return measure(kind, depth, args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        _pin_mmap_threshold()
        try:
            result = measure(kind, depth, args)
        except BaseException as exc:  # report, never hang the parent
            result = {"error": repr(exc)}
        with os.fdopen(write, "wb") as f:
            pickle.dump(result, f)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        result = pickle.load(f)
    os.waitpid(pid, 0)
    if "error" in result:
        raise RuntimeError(f"{kind} depth {depth}: {result['error']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1,2,4,8,16,32")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--size", type=int, default=6, help="feature map side (6 for 28x28)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    depths = [int(d) for d in args.depths.split(",")]
    peak_kind = "CUDA max_memory_allocated" if args.device != "cpu" else "peak RSS growth"

    print(
        f"Stage only (no stem/head): batch {args.batch}, {args.width} channels, "
        f"{args.size}x{args.size}, {args.device}, {args.threads} thread(s). "
        f"Saved = distinct storages autograd keeps for backward; peak = {peak_kind} over one "
        "forward+backward (includes parameter gradients); time = median step.\n"
    )
    print(
        "| depth | ResNet saved MB | RevNet saved MB | ResNet peak MB | RevNet peak MB "
        "| ResNet s | RevNet s | ResNet params | RevNet params |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for depth in depths:
        r = {kind: measure_isolated(kind, depth, args) for kind in KINDS}
        res, rev = r["resnet"], r["revnet"]
        print(
            f"| {depth} | {res['saved'] / MB:.1f} | {rev['saved'] / MB:.1f} "
            f"| {res['peak'] / MB:.1f} | {rev['peak'] / MB:.1f} "
            f"| {res['time']:.3f} | {rev['time']:.3f} | {res['params']:,} | {rev['params']:,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
