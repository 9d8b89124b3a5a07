"""Where one training step of a Fashion-MNIST classifier spends its CPU time: torch.profiler's
top operators for ``--steps`` steps (after one untimed warm-up step) of the recipe-sized model
(width 64, batch 32, AdamW; the ODE-Net solves with dopri5 at rtol = atol = 1e-3, adjoint).

    nice python benchmarks/profile_step.py --model odenet --threads 2 --top 25
    nice python benchmarks/profile_step.py --model resnet

``--sort self`` (default) ranks operators by their own time (kernels); ``--sort total`` by
time including children (what a Python-level call such as ``aten::conv2d`` costs in all).
The profiler clocks operators in wall time: on a loaded machine read the percentages, not the
absolute times (the header gives the step's process CPU time as well).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from classifier_epoch import DATA, MODELS, build_model, load_fashion_mnist
from torch.profiler import ProfilerActivity, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="odenet")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", choices=("self", "total"), default="self")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images, labels = load_fashion_mnist(args.data)
    torch.manual_seed(args.seed)
    model, block = build_model(args.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))

    def step(i: int) -> None:
        idx = order[i * args.batch : (i + 1) * args.batch]
        x, y = images[idx].float() / 255, labels[idx]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step(0)  # warm-up: allocator, oneDNN primitive caches, lazy inits
    cpu0 = time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(1, args.steps + 1):
            step(i)
    cpu = (time.process_time() - cpu0) / args.steps
    key = "self_cpu_time_total" if args.sort == "self" else "cpu_time_total"
    averages = prof.key_averages()
    print(
        f"{args.model}, batch {args.batch}, {args.threads} thread(s), {args.steps} profiled "
        f"step(s); process CPU time per step under the profiler: {cpu:.3f} s"
    )
    if block is not None:
        print(f"NFE of the last step: {block.nfe_forward} forward, {block.nfe_backward} backward")
    print(averages.table(sort_by=key, row_limit=args.top, max_name_column_width=40))
    profiled_self = sum(e.self_cpu_time_total for e in averages) / 1e6 / args.steps
    print(
        f"per step: {profiled_self:.3f} s of operator self time (the profiler clocks operators "
        f"in wall time, so on a loaded machine this exceeds the {cpu:.3f} s of process CPU time; "
        "read the percentages)"
    )


if __name__ == "__main__":
    main()
