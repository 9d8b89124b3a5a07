"""nodezoo's CNF against zuko's flows: the same data, budget and parameter count, in one run.

    nice -n 10 python benchmarks/cnf.py --datasets checkerboard --steps 300
    python benchmarks/cnf.py --datasets digits --steps 200 --batch-size 200

Contenders (``--models``):
* ``nodezoo-cnf`` — :class:`nodezoo.models.CNF` with its defaults (FFJORD: adjoint gradients);
* ``nodezoo-cnf-ckpt`` — the same with ``gradient="checkpoint"``, the mode closest to zuko's
  adaptive-checkpoint adjoint (exact gradients of the discrete solve);
* ``nodezoo-cnf-rnode`` — ``nodezoo-cnf`` trained with RNODE's kinetic-energy and Jacobian
  penalties (``--rnode KINETIC JACOBIAN``, Finlay et al. 2020's 0.01 each by default): the same
  model with and without the regularisation, to measure the NFE it saves and the NLL it costs;
* ``zuko-cnf`` — ``zuko.flows.CNF``, the peer CNF implementation;
* ``zuko-nsf`` / ``zuko-maf`` — zuko's neural spline flow and masked autoregressive flow.

Equal terms: every model sees the same batches (``nodezoo.data.density``: batch ``i`` of epoch
``e`` from seed ``(seed, e, i)``; digits: the same fresh dequantisation noise), takes ``--steps``
Adam steps at ``--lr`` with batch ``--batch-size``, and is scored on the same fixed test set.
Digits are standardised per dimension for every model alike (the training data's exact
dequantised mean and std; nodezoo's ``standardize=True``, a wrapper for zuko's), with the
Jacobian in the NLL. Parameter counts are matched to nodezoo's CNF (``--hidden`` x
``--layers`` concat-squash field): zuko's CNF gets an MLP of ``layers`` hidden layers whose
width is chosen to match, NSF and MAF get 3 transforms of two hidden layers, width chosen
likewise (the counts are printed).

The CNFs are matched as follows: both dopri5 from t = 0 to 1 at the same ``--tol`` (rtol =
atol), both with the exact trace in 2-D and both with a Gaussian Hutchinson estimate in training
on digits (zuko's only choice; nodezoo's ``noise="gaussian"``), both evaluated with the exact
trace. What cannot be matched: zuko's error norm is the max over entries (nodezoo's, like
torchdiffeq's, an RMS norm per part), zuko scales the trace channel by 1e-2 inside the solve
(loosening its tolerance), zuko's first step is the whole interval, and its time input is a
sin/cos embedding instead of concat-squash gates. So the same tolerance can mean different NFE;
the table reports NFE and also the time per function evaluation, the comparison at equal NFE.

Columns: test NLL (nats; and bits/dim for digits) with the exact trace; median wall and CPU
seconds per training epoch (interleaved round-robin over the models epoch by epoch, so load from
other processes hits all alike); NFE per training step forward/backward (mean over the last
epoch; zuko's counted by a hook on its network); CPU ms per function evaluation (an epoch's CPU
time over its forward + backward evaluations); peak memory of one training step (PyTorch's CPU
allocator, via ``benchmarks/_measure.py``). Results: ``benchmarks/results/cnf_<tag>.{json,md}``.
A stopped run resumes: rerun the same command (``--resume-every``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (
    format_bytes,
    machine_description,
    markdown_table,
    peak_memory_growth,
)

from nodezoo.data.density import (
    DIGIT_LEVELS,
    TOY_DENSITIES,
    DigitsDensityDataModule,
    sample_toy,
)
from nodezoo.files import write_atomic
from nodezoo.models.cnf import CNF, nats_to_bits_per_dim

MODELS = (
    "nodezoo-cnf", "nodezoo-cnf-ckpt", "nodezoo-cnf-rnode", "zuko-cnf", "zuko-nsf", "zuko-maf"
)  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results"


# ---- data -------------------------------------------------------------------------------------
@dataclass
class Data:
    name: str
    dim: int
    batch: Callable[[int, int], torch.Tensor]  # (epoch, i) -> (batch_size, dim)
    test: torch.Tensor
    levels: int | None = None
    shift: torch.Tensor | None = None  # every model sees (x - shift) / scale (digits)
    scale: torch.Tensor | None = None

    def standardize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """``(u, log|du/dx|)``: NLL(x) = NLL(u) + Σ log scale, identical for every model."""
        if self.scale is None:
            return x, 0.0
        return (x - self.shift) / self.scale, self.scale.log().sum()


def load_data(name: str, batch_size: int, n_test: int, seed: int) -> Data:
    if name == "digits":
        dm = DigitsDensityDataModule(batch_size=batch_size, seed=seed)
        dm.setup()
        train = dm.pixels("train")

        def digits_batch(epoch: int, i: int) -> torch.Tensor:
            key = np.random.SeedSequence([seed, epoch, i]).generate_state(1)[0]
            gen = torch.Generator().manual_seed(int(key))
            index = torch.randint(len(train), (batch_size,), generator=gen)
            noise = torch.rand(batch_size, train.shape[1], generator=gen)
            return (train[index] + noise) / DIGIT_LEVELS

        shift, scale = dm.standardization()
        return Data(name, 64, digits_batch, dm.splits["test"], DIGIT_LEVELS, shift, scale)
    return Data(
        name,
        2,
        lambda epoch, i: sample_toy(name, batch_size, [seed, epoch, i]),
        sample_toy(name, n_test, seed + 2),
    )


# ---- contenders -------------------------------------------------------------------------------
class Counter:
    """Counts calls of a module's forward (zuko's networks) for NFE."""

    def __init__(self, module: nn.Module):
        self.n = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


@dataclass
class Contender:
    name: str
    model: nn.Module
    nll: Callable[[torch.Tensor], torch.Tensor]  # per-sample NLL, training settings
    eval_nll: Callable[[torch.Tensor], torch.Tensor]  # per-sample NLL, exact trace
    nfe: Callable[[], tuple[int, int] | None] = lambda: None  # (forward, backward) of last step
    stats: dict = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def closest_width(build: Callable[[int], nn.Module], target: int) -> int:
    return min(range(4, 1025), key=lambda h: abs(count(build(h)) - target))


def nodezoo_cnf(data: Data, args, gradient: str, rnode: bool = False) -> Contender:
    kinetic, jacobian = args.rnode if rnode else (0.0, 0.0)
    model = CNF(
        dim=data.dim,
        hidden=args.hidden,
        layers=args.layers,
        trace="auto",
        noise="gaussian",
        solver={"rtol": args.tol, "atol": args.tol, "gradient": gradient},
        standardize=data.scale is not None,
        regularisation={"kinetic": kinetic, "jacobian": jacobian},
    )
    if data.scale is not None:
        model.set_standardization(data.shift, data.scale)

    def nll(x):  # the training loss per sample: with RNODE, its penalty joins every sample's
        out = -model.log_prob(x)
        penalty = model.ode.regularisation_loss if model.training else None
        return out if penalty is None else out + penalty

    def eval_nll(x):
        return -model.log_prob(x, trace="exact")

    def nfe():
        return model.ode.nfe_forward, model.ode.nfe_backward

    name = "nodezoo-cnf" + ("-rnode" if rnode else "" if gradient == "adjoint" else "-ckpt")
    return Contender(name, model, nll, eval_nll, nfe)


def zuko_cnf(data: Data, args, target: int) -> Contender:
    import zuko

    exact = data.dim <= 4  # as nodezoo's trace="auto"

    def build(h: int):
        return zuko.flows.CNF(
            data.dim, hidden_features=[h] * args.layers, rtol=args.tol, atol=args.tol, exact=exact
        )

    flow = build(closest_width(build, target))
    calls = Counter(flow.transform.ode)
    marks = {"start": 0, "after_forward": 0}

    def nll(x):
        marks["start"] = calls.n
        u, log_scale = data.standardize(x)
        out = -flow().log_prob(u) + log_scale
        marks["after_forward"] = calls.n
        return out

    def eval_nll(x):
        flow.transform.exact = True
        try:
            u, log_scale = data.standardize(x)
            return -flow().log_prob(u) + log_scale
        finally:
            flow.transform.exact = exact

    def nfe():
        return marks["after_forward"] - marks["start"], calls.n - marks["after_forward"]

    return Contender("zuko-cnf", flow, nll, eval_nll, nfe)


def zuko_discrete(kind: str, data: Data, target: int) -> Contender:
    import zuko

    cls = zuko.flows.NSF if kind == "nsf" else zuko.flows.MAF

    def build(h: int):
        return cls(data.dim, transforms=3, hidden_features=[h, h])

    flow = build(closest_width(build, target))

    def nll(x):
        u, log_scale = data.standardize(x)
        return -flow().log_prob(u) + log_scale

    return Contender(f"zuko-{kind}", flow, nll, nll)


def build(name: str, data: Data, args) -> Contender:
    if name == "nodezoo-cnf":
        return nodezoo_cnf(data, args, "adjoint")
    if name == "nodezoo-cnf-ckpt":
        return nodezoo_cnf(data, args, "checkpoint")
    if name == "nodezoo-cnf-rnode":
        return nodezoo_cnf(data, args, "adjoint", rnode=True)
    target = count(nodezoo_cnf(data, args, "adjoint").model)
    if name == "zuko-cnf":
        return zuko_cnf(data, args, target)
    return zuko_discrete(name.removeprefix("zuko-"), data, target)


# ---- training and evaluation ------------------------------------------------------------------
def train_epoch(c: Contender, opt, data: Data, epoch: int, steps: int) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    nfe_f = nfe_b = 0
    c.model.train()
    for i in range(steps):
        loss = c.nll(data.batch(epoch, i)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        counts = c.nfe()
        if counts is not None:
            nfe_f, nfe_b = nfe_f + counts[0], nfe_b + counts[1]
    s = c.stats
    s.setdefault("epoch_wall_s", []).append(time.perf_counter() - wall)
    s.setdefault("epoch_cpu_s", []).append(time.process_time() - cpu)
    s.setdefault("nfe_forward", []).append(nfe_f / steps)
    s.setdefault("nfe_backward", []).append(nfe_b / steps)
    s["train_loss"] = loss.item()


def evaluate(c: Contender, data: Data, chunk: int = 2000) -> float:
    c.model.eval()
    with torch.no_grad():
        nll = torch.cat([c.eval_nll(x) for x in data.test.split(chunk)])
    return float(nll.mean())


def _resume_settings(name: str, args) -> dict:
    """What a saved run must share with this one to be continued (not timing-only flags)."""
    skip = {"datasets", "results_dir", "resume_dir", "tag", "no_memory", "resume_every"}
    return {"dataset": name, **{k: v for k, v in sorted(vars(args).items()) if k not in skip}}


def _save_resume(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())  # a stop mid-write leaves the previous state


def run_dataset(name: str, args, resume: Path | None = None) -> dict:
    """Train every contender round-robin, epoch by epoch, and score it.

    A full-budget run takes hours on 2 CPU cores, so with ``resume`` the contenders' weights,
    optimisers, statistics and the RNG are saved there every ``--resume-every`` epochs
    (atomically) and a rerun with the same settings continues from the last save; the file is
    removed once the dataset is scored. Batches depend only on ``(seed, epoch, i)``, so a resumed
    run trains on the same data as an uninterrupted one.
    """
    data = load_data(name, args.batch_size, args.n_test, args.seed)
    contenders, optimisers = [], []
    for model in args.models:
        torch.manual_seed(args.seed)
        c = build(model, data, args)
        contenders.append(c)
        optimisers.append(torch.optim.Adam(c.model.parameters(), lr=args.lr))
    epochs = math.ceil(args.steps / args.steps_per_epoch)
    start = 0
    settings = _resume_settings(name, args)
    if resume is not None and resume.exists():
        saved = torch.load(resume, weights_only=False)
        if saved["settings"] == settings:
            for c, opt, s in zip(contenders, optimisers, saved["contenders"]):
                c.model.load_state_dict(s["model"])
                opt.load_state_dict(s["optimiser"])
                c.stats = s["stats"]
            torch.set_rng_state(saved["rng"])
            start = saved["epoch"]
            print(f"[{name}] resumed after epoch {start} from {resume}", file=sys.stderr)
        else:
            print(f"[{name}] {resume} has other settings: starting afresh", file=sys.stderr)
    for epoch in range(start, epochs):
        steps = min(args.steps_per_epoch, args.steps - epoch * args.steps_per_epoch)
        for c, opt in zip(contenders, optimisers):  # round-robin, epoch by epoch
            train_epoch(c, opt, data, epoch, steps)
        print(f"[{name}] epoch {epoch + 1}/{epochs} done", file=sys.stderr, flush=True)
        if resume is not None and ((epoch + 1) % args.resume_every == 0 or epoch + 1 == epochs):
            states = [
                {"model": c.model.state_dict(), "optimiser": o.state_dict(), "stats": c.stats}
                for c, o in zip(contenders, optimisers)
            ]
            state = {"settings": settings, "epoch": epoch + 1, "rng": torch.get_rng_state()}
            _save_resume(resume, {**state, "contenders": states})
    rows = {}
    for c in contenders:
        s = c.stats
        nll = evaluate(c, data)
        full = s["epoch_wall_s"][: args.steps // args.steps_per_epoch] or s["epoch_wall_s"]
        full_cpu = s["epoch_cpu_s"][: len(full)]
        row = {
            "params": c.params,
            "test_nll": nll,
            "bits_per_dim": None
            if data.levels is None
            else nats_to_bits_per_dim(nll, data.dim, data.levels),
            "epoch_wall_s": statistics.median(full),
            "epoch_cpu_s": statistics.median(full_cpu),
            "train_loss_last": s["train_loss"],
        }
        if c.nfe() is not None:
            row["nfe_forward"] = s["nfe_forward"][-1]
            row["nfe_backward"] = s["nfe_backward"][-1]
            evals = [
                (f + b) * args.steps_per_epoch
                for f, b in zip(s["nfe_forward"][: len(full)], s["nfe_backward"][: len(full)])
            ]
            row["cpu_ms_per_nfe"] = 1e3 * sum(full_cpu) / max(1, sum(evals))
        if not args.no_memory:
            x = data.batch(10**6, 0)

            def step(c=c, x=x):
                c.model.zero_grad(set_to_none=True)
                c.nll(x).mean().backward()

            c.model.train()
            row["peak_memory_bytes"] = peak_memory_growth(step, torch.device("cpu"))
        rows[c.name] = row
    return {"dataset": name, "dim": data.dim, "n_test": len(data.test), "rows": rows}


def markdown(result: dict, args) -> str:
    digits = result["dim"] > 2
    headers = ["model", "params", "test NLL (nats)"]
    headers += ["bits/dim"] if digits else []
    headers += ["wall s/epoch", "CPU s/epoch", "NFE fwd/bwd per step", "CPU ms/NFE", "peak mem"]
    rows = []
    for name, r in result["rows"].items():
        nfe = "-" if "nfe_forward" not in r else f"{r['nfe_forward']:.0f} / {r['nfe_backward']:.0f}"
        cells = [name, r["params"], f"{r['test_nll']:.4f}"]
        cells += [f"{r['bits_per_dim']:.4f}"] if digits else []
        cells += [
            f"{r['epoch_wall_s']:.2f}",
            f"{r['epoch_cpu_s']:.2f}",
            nfe,
            "-" if "cpu_ms_per_nfe" not in r else f"{r['cpu_ms_per_nfe']:.2f}",
            format_bytes(r.get("peak_memory_bytes")),
        ]
        rows.append(cells)
    text = f"### {result['dataset']} ({result['n_test']} test points)\n\n" + markdown_table(
        headers, rows
    )
    ours, peer = result["rows"].get("nodezoo-cnf"), result["rows"].get("zuko-cnf")
    if ours and peer:
        lines = []
        for key, label in (
            ("nodezoo-cnf", "adjoint"),
            ("nodezoo-cnf-ckpt", "checkpoint"),
            ("nodezoo-cnf-rnode", "adjoint + RNODE"),
        ):
            r = result["rows"].get(key)
            if r is None:
                continue
            lines.append(
                f"- nodezoo ({label}) vs zuko CNF: {peer['epoch_cpu_s'] / r['epoch_cpu_s']:.2f}x "
                f"per epoch (CPU time), {peer['epoch_wall_s'] / r['epoch_wall_s']:.2f}x (wall), "
                f"{peer['cpu_ms_per_nfe'] / r['cpu_ms_per_nfe']:.2f}x per function evaluation "
                "(higher = nodezoo faster)."
            )
        text += "\n\n" + "\n".join(lines)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["checkerboard"], choices=[*TOY_DENSITIES, "digits"]
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=300, help="training steps per model")
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-5, help="rtol = atol of both CNFs")
    parser.add_argument(
        "--rnode", nargs=2, type=float, default=(0.01, 0.01), metavar=("KINETIC", "JACOBIAN"),
        help="RNODE weights of nodezoo-cnf-rnode",
    )  # fmt: skip
    parser.add_argument("--n-test", type=int, default=5000, help="2-D test points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--tag", default=None, help="results file name: cnf_<tag>.{json,md}")
    parser.add_argument(
        "--results-dir", default=str(RESULTS), help=f"where to write (default {RESULTS})"
    )
    parser.add_argument(
        "--resume-every", type=int, default=10, metavar="EPOCHS",
        help="save a resume state every EPOCHS epochs (in --resume-dir); 0: never",
    )  # fmt: skip
    parser.add_argument(
        "--resume-dir",
        default=None,
        help="where resume states go (default: the results dir); give a folder outside the "
        "work tree for runs of hours, so that a fresh checkout can resume them",
    )
    args = parser.parse_args(argv)
    if args.resume_every < 0:
        parser.error("--resume-every must be >= 0 (0 turns resuming off)")
    if args.steps < 1 or args.steps_per_epoch < 1:
        parser.error("--steps and --steps-per-epoch must be >= 1")
    torch.set_num_threads(args.threads)
    import zuko

    header = (
        f"nodezoo CNF vs zuko {zuko.__version__} flows: {args.steps} Adam steps (lr {args.lr}) "
        f"of batch {args.batch_size}, epochs of {args.steps_per_epoch} steps; CNF field "
        f"{args.hidden} x {args.layers}, dopri5 rtol = atol = {args.tol}; torch "
        f"{torch.__version__}, {args.threads} thread(s); {machine_description()}."
    )
    if "nodezoo-cnf-rnode" in args.models:
        header += f" RNODE weights: kinetic {args.rnode[0]}, Jacobian {args.rnode[1]}."
    print(header, flush=True)
    results = {"header": header, "args": vars(args), "datasets": []}
    command = " ".join(sys.argv[1:] if argv is None else argv)
    texts = [
        f"# CNF benchmark\n\nBudget: {header}\n\nCommand: `python benchmarks/cnf.py {command}`"
        "\n\nNLLs are those reached on this budget by every model alike: compare them with each "
        "other, not with converged results. Timings: median over the full epochs; CPU time is "
        "the fair clock on a shared machine (wall time includes waiting for other processes)."
    ]
    tag = args.tag or f"{'_'.join(args.datasets)}_{args.steps}steps"
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    states = Path(args.resume_dir or out)
    states.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        resume = None if args.resume_every == 0 else states / f".cnf_{tag}_{name}.resume.pt"
        result = run_dataset(name, args, resume)
        results["datasets"].append(result)
        texts.append(markdown(result, args))
        print("\n" + texts[-1], flush=True)
    (out / f"cnf_{tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"cnf_{tag}.md").write_text("\n\n".join(texts) + "\n")
    print(f"\nwrote {out / f'cnf_{tag}.md'} and .json", flush=True)
    for name in args.datasets:  # scored and written: the resume states have done their job
        (states / f".cnf_{tag}_{name}.resume.pt").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
