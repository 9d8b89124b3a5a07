"""Learn a 2-D density with a continuous normalizing flow (paper section 4, FFJORD) in a minute.

nodezoo's ``CNF`` is trained on fresh batches of a toy density (8 Gaussians by default) with a
plain PyTorch loop; the zoo's recipes (``recipes/density/``) train the same model with
Lightning at full budget. The script prints the test NLL (exact trace, nats) before and after,
the solver's work per training step, and writes a picture: the data, the learned density,
samples, and points flowing from the base Gaussian to the data.

    python examples/density_cnf.py [--data 8gaussians] [--steps 400] [--out FILE.png]

A built zoo folder loads instead of training: ``nodezoo.from_pretrained("cnf-8gaussians")``
(``nodezoo list`` shows what is shipped).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nodezoo.data.density import TOY_DENSITIES, sample_toy
from nodezoo.models.cnf import CNF
from nodezoo.models.cnf_plots import plot_cnf

# Looser than FFJORD's 1e-5 (the recipes' setting) so the example takes a minute on 2 CPU cores;
# backprop through the solver: exact gradients, and for a field this small memory is no issue.
SOLVER = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-4, "gradient": "backprop"}
TEST_SEED = 12345


def test_nll(model: CNF, points: torch.Tensor) -> float:
    model.eval()
    try:
        return -model.log_prob(points).mean().item()  # eval mode: the exact trace
    finally:
        model.train()


def main(argv: list[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="8gaussians", choices=sorted(TOY_DENSITIES))
    parser.add_argument("--steps", type=int, default=400, help="Adam steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=32, help="width of the concat-squash field")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="picture (PNG)")
    args = parser.parse_args(argv)
    out = args.out or Path("outputs") / f"cnf_{args.data}.png"

    torch.set_num_threads(1)  # a field this small gains nothing from a second thread
    torch.manual_seed(args.seed)
    model = CNF(dim=2, hidden=args.hidden, layers=3, solver=SOLVER)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    test_points = sample_toy(args.data, 2000, TEST_SEED)
    before = test_nll(model, test_points)
    print(f"{args.data}: test NLL {before:.3f} nats before training")

    start, nfe_forward, nfe_backward = time.perf_counter(), 0, 0
    for step in range(args.steps):
        batch = sample_toy(args.data, args.batch_size, [args.seed, step])  # fresh points
        loss = -model.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        nfe_forward += model.ode.nfe_forward
        nfe_backward += model.ode.nfe_backward
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            print(f"  step {step + 1:4d}: training NLL {loss.item():.3f}")
    seconds = time.perf_counter() - start

    after = test_nll(model, test_points)
    print(
        f"{args.data}: test NLL {after:.3f} nats after {args.steps} steps ({seconds:.0f} s; "
        f"NFE fwd {nfe_forward / args.steps:.1f} / bwd {nfe_backward / args.steps:.1f} per step)"
    )
    picture = plot_cnf(model, test_points, out, n_samples=5000, grid=100)
    print(f"wrote {picture}")
    return before, after


if __name__ == "__main__":
    main()
