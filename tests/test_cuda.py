"""nodezoo on a CUDA device gives the CPU's numbers: solvers (every family and gradient mode),
the ODE block with its regularisers and warm start, each model family, a pretrained zoo
model, and a `nodezoo fit` on the GPU.

Skipped without CUDA: the suite never needs a GPU. On a lent GPU machine,
``bash benchmarks/device_check.sh`` runs this module (and the GPU timings) in one go.
Comparisons are in float64 where the arithmetic allows, so a device mix-up (a tensor made on
the CPU, a generator on the wrong device) shows as an error or a wrong number, not as noise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolveStats, solve

# NODEZOO_TEST_DEVICE=cpu runs the module's code against itself (CPU vs CPU): a check of the
# tests, not of a device, for editing them on a machine without a GPU
CUDA = torch.device(os.environ.get("NODEZOO_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
)
F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]


class Field(torch.nn.Module):
    """A small MLP field with a time input, in float64."""

    def __init__(self, dim: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, 16), torch.nn.Tanh(), torch.nn.Linear(16, dim)
        ).double()

    def forward(self, t, y):
        tt = t[:, None] if t.dim() == 1 else t.expand(*y.shape[:-1], 1)  # per sample: (B,)
        tt = tt.to(y.dtype)
        return self.net(torch.cat([y, tt], -1))


def on_both(fn):
    """``fn(device)`` on the CPU and on CUDA, the CUDA outputs brought back to the CPU."""
    cpu = fn(torch.device("cpu"))
    gpu = fn(CUDA)
    move = lambda x: x.cpu() if isinstance(x, torch.Tensor) else x
    return cpu, [move(x) for x in gpu] if isinstance(gpu, (list, tuple)) else move(gpu)


def solve_and_grad(config: dict, device: torch.device):
    """States at three times, gradients to y0 and the parameters, and the NFE."""
    f = Field().to(device)
    y0 = torch.linspace(-1, 1, 12, dtype=F64, device=device).reshape(4, 3).requires_grad_()
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, device=device)
    stats = SolveStats()
    ys = solve(f, y0, t, config, stats=stats)
    grads = torch.autograd.grad(ys.pow(2).sum(), (y0, *f.parameters()))
    return [ys.detach(), *grads, torch.tensor([stats.nfe_forward, stats.nfe_backward])]


SOLVES = {
    "dopri5-backprop": dict(method="dopri5", rtol=1e-8, atol=1e-8, gradient="backprop"),
    "dopri5-adjoint-seminorm": dict(method="dopri5", rtol=1e-8, atol=1e-8, gradient="adjoint"),
    "tsit5-checkpoint": dict(method="tsit5", rtol=1e-8, atol=1e-8, gradient="checkpoint"),
    "dopri8-adjoint": dict(method="dopri8", rtol=1e-8, atol=1e-8, gradient="adjoint"),
    "rk4-fixed-backprop": dict(method="rk4", step_size=0.05, gradient="backprop"),
    "adams-adjoint": dict(method="implicit_adams", step_size=0.05, gradient="adjoint"),
    "radau5-backprop": dict(method="radau5", rtol=1e-7, atol=1e-7, gradient="backprop"),
    "kvaerno5-adjoint": dict(method="kvaerno5", rtol=1e-7, atol=1e-7, gradient="adjoint"),
    "per-sample-checkpoint": dict(
        method="dopri5", rtol=1e-8, atol=1e-8, gradient="checkpoint", per_sample=True
    ),
}


@pytest.mark.parametrize("name", sorted(SOLVES))
def test_solves_and_gradients_match_the_cpu(name):
    cpu, gpu = on_both(lambda device: solve_and_grad(SOLVES[name], device))
    assert torch.equal(gpu[-1], cpu[-1]), f"NFE differ: CPU {cpu[-1]}, CUDA {gpu[-1]}"
    for a, b in zip(gpu[:-1], cpu[:-1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_event_time_and_dense_output_match_the_cpu():
    def run(device):
        f = Field().to(device)
        y0 = torch.tensor([0.5, -0.2, 0.1], dtype=F64, device=device)
        t = torch.tensor([0.0, 5.0], dtype=F64, device=device)
        event_t, ys = nodezoo.odeint_event(
            f, y0, t[0], event_fn=lambda t, y: y[0] - 0.7, rtol=1e-9, atol=1e-9
        )
        dense = nodezoo.odeint_dense(f, y0, t[0], t[1], rtol=1e-9, atol=1e-9)
        return [event_t, ys[-1], dense(torch.tensor(2.5, dtype=F64, device=device))]

    cpu, gpu = on_both(run)
    for a, b in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_regularised_warm_started_block_matches_the_cpu(monkeypatch):
    """Kinetic + Jacobian integrals, STEER and warm start on the conv ODE block; the Hutchinson
    probe is drawn on the CPU and moved, so both devices use the same one."""
    import nodezoo.nn.regularisation as regularisation
    from nodezoo.nn import ConvODEField, ODEBlock

    def same_probe(z):
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, 2, z.shape, generator=g) * 2 - 1).to(z.device, z.dtype)

    monkeypatch.setattr(regularisation, "rademacher_like", same_probe)

    def run(device):
        torch.manual_seed(0)
        block = ODEBlock(
            ConvODEField(4),
            solver=dict(method="dopri5", rtol=1e-6, atol=1e-6, warm_start=True),
            regularisation=dict(kinetic=0.1, jacobian=0.1, steer=0.2),
        ).to(device, F64)
        x = torch.randn(2, 4, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
        out = []
        for _ in range(2):  # the second solve starts from the learnt first step
            torch.manual_seed(2)  # STEER's end time
            y = block(x.to(device))
            loss = y.pow(2).mean() + block.regularisation_loss
            grads = torch.autograd.grad(loss, tuple(block.parameters()))
            out += [y.detach(), loss.detach(), *grads]
        out.append(torch.tensor([m.value for m in block.first_steps], dtype=F64))
        return out

    cpu, gpu = on_both(run)
    for a, b in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backbone", ["odenet", "rknet", "resnet", "revnet", "mlp"])
def test_image_classifiers_match_the_cpu(backbone):
    from nodezoo.models.classifier import ImageClassifier

    def run(device):
        torch.manual_seed(0)
        model = ImageClassifier(backbone, num_classes=10, width=16, depth=2).to(device, F64)
        x = torch.rand(3, 1, 28, 28, dtype=F64, generator=torch.Generator().manual_seed(0))
        logits = model(x.to(device))
        grads = torch.autograd.grad(logits.logsumexp(-1).sum(), tuple(model.parameters()))
        return [logits.detach(), *grads]

    cpu, gpu = on_both(run)
    for a, b in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_cnf_log_prob_sample_and_round_trip_on_cuda():
    from nodezoo.models.cnf import CNF

    def run(device):
        torch.manual_seed(0)
        model = CNF(dim=2, hidden=16, layers=2).to(device, F64).eval()
        x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(0)).to(device)
        samples = model.sample(8, generator=torch.Generator().manual_seed(1))
        return [model.log_prob(x), samples, model.log_prob(samples)]

    cpu, gpu = on_both(run)
    for a, b in zip(gpu, cpu, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    model = CNF(dim=2, hidden=16, layers=2).to(CUDA)  # a generator on the model's device
    draws = [model.sample(4, generator=torch.Generator(CUDA).manual_seed(3)) for _ in range(2)]
    assert draws[0].device.type == CUDA.type and torch.equal(draws[0], draws[1])


def test_latent_ode_latents_match_and_loss_trains_on_cuda():
    from nodezoo.models.latent_ode import LatentODE

    def build(device):
        torch.manual_seed(0)
        return LatentODE(obs_dim=2, latent_dim=3, encoder_hidden=8, field_hidden=8,
                         decoder_hidden=8).to(device)  # fmt: skip

    def latents(device):
        z0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)).to(device)
        t = torch.tensor([[0.2, 0.9, 1.4], [0.5, 0.9, 2.0]], device=device)
        return build(device).latents_at(z0, t)

    cpu, gpu = on_both(latents)
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)

    model = build(CUDA)
    g = torch.Generator().manual_seed(0)
    batch = {
        "obs_t": torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.5, 0.5]]),
        "obs_x": torch.randn(2, 3, 2, generator=g),
        "obs_mask": torch.tensor([[True, True, True], [True, True, False]]),
        "target_t": torch.tensor([[0.8, 1.0], [0.7, 0.7]]),
        "target_x": torch.randn(2, 2, 2, generator=g),
        "target_mask": torch.tensor([[True, True], [True, False]]),
    }
    loss, _ = model.loss({k: v.to(CUDA) for k, v in batch.items()})
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.device.type == CUDA.type for p in model.parameters())


@pytest.mark.parametrize("dim", [2, 64])
def test_card_pictures_of_models_on_cuda(tmp_path, dim):
    """The card pictures (density grid, samples, trajectories) of models that live on the GPU."""
    pytest.importorskip("matplotlib")
    from nodezoo.data.spirals import make_spirals
    from nodezoo.models.cnf import CNF
    from nodezoo.models.cnf_plots import plot_cnf
    from nodezoo.models.latent_ode import LatentODE
    from nodezoo.models.latent_ode_plots import plot_spirals

    torch.manual_seed(0)
    cnf = CNF(dim=dim, hidden=8, layers=1, solver={"rtol": 1e-3, "atol": 1e-3}).to(CUDA)
    data = torch.randn(300, dim) if dim == 2 else torch.rand(40, dim)
    path = plot_cnf(cnf, data, tmp_path / "cnf.png", n_samples=300, grid=20, n_times=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    latent = LatentODE(obs_dim=2, latent_dim=3, encoder_hidden=8, field_hidden=8,
                       decoder_hidden=8).to(CUDA)  # fmt: skip
    spirals = make_spirals(3, seed=0, n_obs=[5, 8], window=10, horizon=5, n_total=100)
    path = plot_spirals(latent, spirals, tmp_path / "spirals.png", n=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_random_state_puts_the_cuda_generators_back():
    from nodezoo.callbacks import RandomState

    torch.manual_seed(5)
    torch.rand(1, device=CUDA)  # CUDA's generators exist
    saved = RandomState().state_dict()
    expected = torch.rand(4, device=CUDA)
    torch.rand(9, device=CUDA)
    callback = RandomState()
    callback.load_state_dict(saved)
    callback.on_train_start(None, None)
    assert torch.equal(torch.rand(4, device=CUDA), expected)


def test_pretrained_odenet_predicts_the_same_on_cuda():
    pytest.importorskip("safetensors")
    model = nodezoo.from_pretrained(REPO / "model_cards" / "odenet-fashion-mnist")
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(CUDA)(x.to(CUDA)).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)  # float32, other kernels
    assert torch.equal(gpu.argmax(-1), cpu.argmax(-1))


def test_fit_on_the_gpu_writes_a_checkpoint(tmp_path, tiny_fashion_dir, clean_env):
    """``nodezoo fit`` with a recipe on the GPU (real Lightning, real data files)."""
    pytest.importorskip("jsonargparse")
    env = {**clean_env, "PYTHONPATH": os.pathsep.join([str(REPO), clean_env["PYTHONPATH"]])}
    run_dir = tmp_path / "run"
    args = [
        "-m", "nodezoo.cli", "fit",
        f"--config={REPO / 'recipes' / 'fashion_mnist' / 'odenet.yaml'}",
        f"--data.init_args.data_dir={tiny_fashion_dir}",
        "--data.init_args.val_size=16", "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0", "--model.init_args.width=8",
        "--trainer.limit_val_batches=1", "--trainer.max_epochs=1",
        f"--trainer.accelerator={'gpu' if CUDA.type == 'cuda' else 'cpu'}", "--trainer.devices=1",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={run_dir}",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6  # 48 training images in batches of 8
