import itertools
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from trainers import quiet_trainer

from nodezoo.models.classifier import ImageClassifier
from nodezoo.nn import ODEBlock, ReversibleSequence
from nodezoo.solvers import SolverConfig, SolverConfigError

BACKBONES = ["odenet", "rknet", "resnet", "revnet", "mlp"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ode_blocks(model) -> list[ODEBlock]:
    return [m for m in model.modules() if isinstance(m, ODEBlock)]


def separable_data(n: int = 32, size: int = 12, seed: int = 0, period: int = 4):
    """Class 0 has horizontal stripes, class 1 vertical ones (random phase, plus noise): a
    texture that survives the head's global average pooling, unlike a position cue."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    phase = torch.randint(0, period, (n, 1, 1, 1), generator=g)
    i = torch.arange(size)
    rows = ((i.view(1, 1, size, 1) + phase) % period < period // 2).expand(n, 1, size, size)
    cols = ((i.view(1, 1, 1, size) + phase) % period < period // 2).expand(n, 1, size, size)
    stripes = torch.where(y.view(n, 1, 1, 1) == 0, rows, cols).float()
    return 0.3 * torch.rand(n, 1, size, size, generator=g) + 0.6 * stripes, y


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_shape_and_backward_reach_every_parameter(backbone):
    torch.manual_seed(0)
    model = ImageClassifier(backbone, num_classes=7, width=16, depth=2)
    x = torch.rand(4, 1, 28, 28)
    features = model.forward_features(x)
    assert features.shape == (4, model.num_features)
    logits = model.forward_head(features)
    assert logits.shape == (4, 7)
    logits.square().sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_parameter_counts_match_the_paper_models():
    # REFERENCE.md: torchdiffeq's ODE-Net ~208k, its 6-block ResNet ~577k; paper Table 1:
    # ODE-Net / RK-Net 0.22M, ResNet 0.60M, 1-layer MLP 0.24M.
    assert n_params(ImageClassifier("odenet")) == 208_266
    assert n_params(ImageClassifier("rknet")) == 208_266
    # Ours, not torchdiffeq's: its example's 6 pre-activation blocks use bias=False convolutions
    # (576,778 parameters); ours keep the conv biases, 6 blocks x 2 convs x 64 = 768 more.
    assert n_params(ImageClassifier("resnet")) == 576_778 + 6 * 2 * 64
    assert n_params(ImageClassifier("mlp", width=300)) == 784 * 300 + 300 + 300 * 10 + 10
    # RevNet: the ResNet stage on half the channels twice per block.
    assert n_params(ImageClassifier("revnet")) == 208_266 - 75_392 + 6 * 2 * 18_624
    # Augmentation widens the ODE state and the head sees all channels.
    augmented = ImageClassifier("odenet", augment_channels=4)
    assert augmented.num_features == 68 and augmented.head.in_features == 68


def test_stages_use_the_shared_blocks():
    assert len(ode_blocks(ImageClassifier("odenet"))) == 1
    assert len(ode_blocks(ImageClassifier("rknet"))) == 1
    revnet = ImageClassifier("revnet", depth=3)
    stacks = [m for m in revnet.modules() if isinstance(m, ReversibleSequence)]
    assert len(stacks) == 1 and len(stacks[0].blocks) == 3
    assert not ode_blocks(ImageClassifier("resnet"))


def test_odenet_counts_function_evaluations():
    model = ImageClassifier("odenet", width=16)
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    (block,) = ode_blocks(model)
    assert block.nfe_forward > 0 and block.nfe_backward > 0
    rknet = ImageClassifier("rknet", width=16)
    rknet(torch.rand(2, 1, 28, 28)).sum().backward()
    (block,) = ode_blocks(rknet)
    assert block.nfe_forward > 0 and block.nfe_backward == 0  # backprop: no adjoint solve


def test_solver_config_round_trips_through_hparams(tmp_path):
    model = ImageClassifier("odenet", solver={"rtol": 1e-4, "backend": "torchdiffeq"})
    stored = model.hparams.solver
    assert type(stored) is dict
    assert stored == SolverConfig(rtol=1e-4, backend="torchdiffeq").to_dict()
    assert ode_blocks(model)[0].solver == SolverConfig.from_dict(stored)
    rebuilt = ImageClassifier(**model.hparams)
    assert rebuilt.hparams.solver == stored and rebuilt.solver == model.solver
    # A SolverConfig object is stored as its plain dict too; rknet keeps its own default.
    cfg = SolverConfig(method="rk4", step_size=0.25, gradient="backprop")
    assert ImageClassifier("odenet", solver=cfg).hparams.solver == cfg.to_dict()
    assert ImageClassifier("rknet").solver.gradient == "backprop"
    assert ImageClassifier("resnet").hparams.solver is None
    # Through a Lightning checkpoint.
    trainer = quiet_trainer(default_root_dir=tmp_path)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.hparams.solver == stored
    x = torch.rand(2, 1, 28, 28)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))


def test_reset_classifier_keeps_features():
    torch.manual_seed(0)
    model = ImageClassifier("resnet", width=16, depth=1)
    x = torch.rand(3, 1, 28, 28)
    before = model.forward_features(x).detach()
    model.reset_classifier(4)
    assert model(x).shape == (3, 4)
    assert model.hparams.num_classes == 4
    assert model.val_acc.num_classes == 4
    assert torch.equal(model.forward_features(x).detach(), before)


def test_normalisation_happens_inside_the_model():
    torch.manual_seed(0)
    plain = ImageClassifier("mlp", width=8)
    normed = ImageClassifier("mlp", width=8, mean=[0.3], std=[0.5])
    normed.load_state_dict(plain.state_dict())  # mean/std are hparams, not weights
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(normed(x), plain((x - 0.3) / 0.5))


def test_bad_inputs_get_clear_errors():
    model = ImageClassifier("resnet", width=8, depth=1)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(2, 3, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="got \\(2, 1, 32, 32\\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="float in \\[0, 1\\]"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backbone": "vgg"}, ValueError, "odenet, rknet, resnet, revnet, mlp"),
        ({"backbone": "resnet", "solver": {"rtol": 1e-4}}, ValueError, "no ODE"),
        ({"backbone": "resnet", "augment_channels": 2}, ValueError, "augment_channels"),
        ({"backbone": "revnet", "width": 15}, ValueError, "even"),
        ({"image_size": 4}, ValueError, "at least 6x6"),
        ({"mean": [0.1, 0.2], "std": [1.0, 1.0]}, ValueError, "one value per input channel"),
        ({"optimizer": "lbfgs"}, ValueError, "sgd, adam, adamw"),
        ({"lr_schedule": "step"}, ValueError, "multistep, cosine, onecycle, constant"),
        ({"solver": {"tolerance": 1e-3}}, SolverConfigError, "Unknown solver setting"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageClassifier(**kwargs)


def test_optimizers_and_schedules():
    model = ImageClassifier("mlp", width=8, lr_milestones=[3, 5], lr_gamma=0.5)
    conf = model.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.SGD)
    assert conf["optimizer"].defaults["momentum"] == 0.9
    assert sorted(conf["lr_scheduler"]["scheduler"].milestones) == [3, 5]
    assert conf["lr_scheduler"]["interval"] == "epoch"
    default = ImageClassifier("mlp", width=8)
    with pytest.raises(ValueError, match="max_epochs"):
        default.configure_optimizers()
    default._trainer = SimpleNamespace(max_epochs=160)  # the paper's run length
    assert sorted(default.configure_optimizers()["lr_scheduler"]["scheduler"].milestones) == [
        60,
        100,
        140,
    ]
    adamw = ImageClassifier("mlp", width=8, optimizer="adamw", lr_schedule="constant")
    assert isinstance(adamw.configure_optimizers(), torch.optim.AdamW)


def test_onecycle_warms_up_then_decays_every_step():
    model = ImageClassifier("mlp", width=8, optimizer="adam", lr=0.01, lr_schedule="onecycle")
    with pytest.raises(ValueError, match="max_epochs or max_steps"):
        model.configure_optimizers()
    model._trainer = SimpleNamespace(estimated_stepping_batches=100)
    conf = model.configure_optimizers()
    assert conf["lr_scheduler"]["interval"] == "step"
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lrs.__getitem__)
    assert peak in (24, 25) and lrs[peak] == pytest.approx(0.01)  # lr_warmup = 0.25 of the run
    assert lrs[0] == pytest.approx(0.01 / 25) and lrs[-1] < 1e-5
    assert all(a <= b for a, b in itertools.pairwise(lrs[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    with pytest.raises(ValueError, match="lr_warmup"):
        ImageClassifier("mlp", width=8, lr_warmup=1.5)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7])
def test_onecycle_works_for_runs_of_a_few_steps(total):
    model = ImageClassifier("mlp", width=8, optimizer="adam", lr=0.01, lr_schedule="onecycle")
    model._trainer = SimpleNamespace(estimated_stepping_batches=total)
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 < lr <= 0.01 + 1e-12 for lr in lrs)
    assert lrs[-1] < lrs[0] or total == 1  # it decays to the end of the run


@pytest.mark.parametrize("backbone", ["odenet", "resnet"])
def test_a_few_steps_lower_the_loss(backbone):
    torch.manual_seed(0)
    x, y = separable_data()
    # Width 64 as in the paper: GroupNorm(32, 64) keeps 2 channels per group; at width <= 32
    # it is per-channel (instance) norm and the GN-ReLU-pool head passes little signal.
    model = ImageClassifier(
        backbone, num_classes=2, image_size=12, width=64, depth=2, lr_schedule="constant"
    )
    opt = model.configure_optimizers()  # SGD, momentum 0.9, lr 0.1
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_lightning_fit_logs_metrics_and_predicts_probabilities(tmp_path):
    torch.manual_seed(0)
    x, y = separable_data(n=16)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = ImageClassifier(
        "resnet", num_classes=2, image_size=12, width=8, depth=1, lr=0.05, lr_schedule="cosine"
    )
    trainer = quiet_trainer(max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(model, loader, loader)
    logged = set(trainer.callback_metrics)
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= logged
    trainer.test(model, loader, verbose=False)
    assert {"test/loss", "test/acc"} <= set(trainer.callback_metrics)
    test_acc = float(trainer.callback_metrics["test/acc"])
    probs = torch.cat(trainer.predict(model, DataLoader(x, batch_size=8)))
    assert probs.shape == (16, 2)
    assert torch.allclose(probs.sum(-1), torch.ones(16))
    # the logged accuracy is the fraction of the test set the model gets right
    hand = float((probs.argmax(-1) == y).float().mean())
    assert test_acc == pytest.approx(hand)


def test_logits_along_trajectory_ends_at_the_forward_logits():
    import torch

    from nodezoo.models.classifier import ImageClassifier

    torch.manual_seed(0)
    model = ImageClassifier(backbone="odenet", width=8, image_size=12).eval()
    x = torch.rand(3, 1, 12, 12)
    with torch.no_grad():
        traj = model.logits_along_trajectory(x, torch.linspace(0, 1, 5))
        final = model(x)
    assert traj.shape == (5, 3, 10)
    assert torch.allclose(traj[-1], final, atol=1e-5)
    assert not torch.allclose(traj[0], final, atol=1e-3)
