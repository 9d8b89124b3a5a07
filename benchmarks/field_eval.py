"""Cost of one evaluation of the ODE-Net's vector field on CPU, old against new, in one process.

Times the two calls an adjoint training step makes (``classifier_epoch.py`` times whole steps):

- ``f``: one ``f(t, y)`` under ``no_grad``, as in the forward solve;
- ``f+vjp``: ``f(t, y)`` with a graph and ``autograd.grad`` for ``y`` and every parameter, as
  in each evaluation of the adjoint's backward solve.

The state is the recipe's 32 x 64 x 6 x 6. Contenders: ``legacy`` (the field before issue 13,
``_legacy_field.py``), ``current`` (``nodezoo.nn.ConvODEField``), ``channels-last`` (current,
with the state and conv weights in channels-last memory format) and, with ``--compile``,
``compiled`` (``torch.compile`` of current, default inductor, fresh cache; its compile time is
printed).
All share the same weights; samples are interleaved round-robin and the medians of wall and
process CPU time reported, with each contender's ratio to ``legacy``.

    nice python benchmarks/field_eval.py --threads 1 --repeats 30
    nice python benchmarks/field_eval.py --threads 1 --compile
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch
from _legacy_field import LegacyConvODEField
from _measure import machine_description, median, per_call, time_round_robin
from torch import nn

from nodezoo.nn import ConvODEField


class ChannelsLast(nn.Module):
    """The field on a channels-last copy of the state (oneDNN's native layout: no reorders)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field.to(memory_format=torch.channels_last)

    def forward(self, t, x):
        return self.field(t, x.contiguous(memory_format=torch.channels_last))


def evaluations(field: nn.Module, t: torch.Tensor, x: torch.Tensor):
    params = tuple(field.parameters())

    def f():
        with torch.no_grad():
            return field(t, x)

    def f_vjp():
        y = x.detach().requires_grad_(True)
        fy = field(t, y)
        return torch.autograd.grad(fy, (y, *params), torch.ones_like(fy))

    return f, f_vjp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30, help="timed samples per contender")
    parser.add_argument("--calls", type=int, default=5, help="calls per sample")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="add torch.compile (slow start)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    legacy = LegacyConvODEField(64)
    current = ConvODEField(64)
    current.load_state_dict(legacy.state_dict())
    fields = {
        "legacy": legacy,
        "current": current,
        "channels-last": ChannelsLast(copy.deepcopy(current)),
    }
    x, t = torch.randn(args.batch, 64, 6, 6), torch.tensor(0.3)
    header = ""
    if args.compile:
        # A fresh inductor cache, so the printed compile time is what a first run pays.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="field_eval_inductor_")
        fields["compiled"] = torch.compile(copy.deepcopy(current))
        f, f_vjp = evaluations(fields["compiled"], t, x)
        for name, fn in (("f", f), ("f+vjp", f_vjp)):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            fn()
            header += (
                f"torch.compile, first {name} call (compiles one graph): "
                f"{time.perf_counter() - wall0:.1f} s wall, {time.process_time() - cpu0:.1f} s "
                "CPU in this process (inductor compiles in worker processes)\n"
            )
    reference = legacy(t, x)
    runners = {}
    for name, field in fields.items():
        error = (field(t, x) - reference).abs().max().item()
        header += f"{name}: max |f - legacy f| = {error:.1e}\n"
        f, f_vjp = evaluations(field, t, x)
        runners[f"{name} f"] = per_call(f, args.calls)
        runners[f"{name} f+vjp"] = per_call(f_vjp, args.calls)
    divisors = dict.fromkeys(runners, args.calls)
    samples = time_round_robin(runners, repeats=args.repeats, warmup=2, divisors=divisors)

    print(
        f"ODE-Net field GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN, state {args.batch} x 64 x 6 x 6, "
        f"{args.threads} thread(s), {machine_description()}, torch {torch.__version__}; "
        f"{args.repeats} interleaved samples of {args.calls} calls each, medians.\n"
    )
    print(header)
    print("| field | call | wall ms | CPU ms | wall / legacy | CPU / legacy |")
    print("|---|---|---:|---:|---:|---:|")
    for call in ("f", "f+vjp"):
        base = {c: median(samples[c][f"legacy {call}"]) for c in ("wall", "cpu")}
        for name in fields:
            m = {c: median(samples[c][f"{name} {call}"]) for c in ("wall", "cpu")}
            print(
                f"| {name} | {call} | {1e3 * m['wall']:.3f} | {1e3 * m['cpu']:.3f} "
                f"| {m['wall'] / base['wall']:.2f} | {m['cpu'] / base['cpu']:.2f} |"
            )


if __name__ == "__main__":
    main()
