"""``nodezoo evaluate``'s numbers and data set-up, pinned where mutation testing found them
loose: the classifier's metrics against a hand count over the same batches, ``--seed`` reaching
the init arg each data module names, overrides that leave the recipe alone when unset, and a
clear refusal for everything evaluate cannot do. Tiny models and the tiny IDX files only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nodezoo.data.density import ToyDensityDataModule
from nodezoo.data.images import FashionMNISTDataModule
from nodezoo.models.classifier import ImageClassifier
from nodezoo.runs import ode_blocks
from nodezoo.zoo import ZooError
from nodezoo.zoo.evaluation import (
    build_datamodule,
    datamodule_class,
    evaluate,
    evaluate_cnf,
    evaluate_image_classifier,
    evaluate_spirals,
)
from nodezoo.zoo.evaluation import test_datamodule as datamodule_for_testing

FASHION = "nodezoo.data.FashionMNISTDataModule"
TOY = "nodezoo.data.density.ToyDensityDataModule"


def recipe(class_path: str, **init_args) -> dict:
    return {"data": {"class_path": class_path, "init_args": init_args}}


@pytest.mark.parametrize("batches", [None, 2])
def test_classifier_metrics_are_the_hand_count(tiny_fashion_dir, batches):
    torch.manual_seed(0)
    model = ImageClassifier("odenet", width=4, lr_schedule="constant").eval()
    (block,) = ode_blocks(model)
    data = FashionMNISTDataModule(data_dir=str(tiny_fashion_dir), batch_size=10, val_size=8)
    metrics = evaluate_image_classifier(model, data, limit_batches=batches)
    loss, correct, count, nfe, seen = 0.0, 0, 0, [], 0
    with torch.no_grad():
        for x, y in data.test_dataloader():
            if batches is not None and seen == batches:
                break
            logits = model(x)
            nfe.append(block.nfe_forward)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += len(y)
            seen += 1
    assert count == (32 if batches is None else 20)  # 32 test images in batches of 10
    assert metrics["test/samples"] == count
    assert metrics["test/acc"] == pytest.approx(correct / count)
    assert metrics["test/loss"] == pytest.approx(loss / count, rel=1e-6)
    assert metrics["test/nfe_forward"] == pytest.approx(sum(nfe) / len(nfe))
    assert metrics["model/params"] == sum(p.numel() for p in model.parameters())


def test_a_model_without_ode_blocks_reports_no_nfe(tiny_fashion_dir):
    model = ImageClassifier("mlp", width=4)
    data = FashionMNISTDataModule(data_dir=str(tiny_fashion_dir), batch_size=16, val_size=8)
    metrics = evaluate_image_classifier(model, data)
    assert "test/nfe_forward" not in metrics and metrics["test/samples"] == 32
    with pytest.raises(ZooError, match=r"the test set is empty \(or limit_batches=0\)"):
        evaluate_image_classifier(model, data, limit_batches=0)


def test_empty_test_sets_are_refused_for_every_family():
    from nodezoo.data.spirals import SpiralsDataModule
    from nodezoo.models.cnf import CNF
    from nodezoo.models.rnn_baseline import RNNBaseline

    spirals = SpiralsDataModule(n_train=4, n_val=2, n_test=4, batch_size=2)
    with pytest.raises(ZooError, match=r"the test set is empty \(or limit_batches=0\)"):
        evaluate_spirals(RNNBaseline(hidden=4), spirals, limit_batches=0)
    density = ToyDensityDataModule(n_train=8, n_val=4, n_test=8, batch_size=4)
    with pytest.raises(ZooError, match=r"the test set is empty \(or limit_batches=0\)"):
        evaluate_cnf(CNF(dim=2, hidden=4, layers=1), density, limit_batches=0)


def test_seed_reaches_the_init_arg_the_data_module_names(tiny_fashion_dir):
    toy = datamodule_for_testing(recipe(TOY, n_test=8, seed=3), seed=11, batch_size=4)
    assert toy.hparams.test_seed == 11 and toy.hparams.seed == 3  # training data kept
    assert toy.hparams.batch_size == 4
    kept = datamodule_for_testing(
        recipe(TOY, n_test=8, seed=3, test_seed=5)
    )  # no seed: the recipe's
    assert kept.hparams.test_seed == 5
    images = datamodule_for_testing(
        recipe(FASHION, data_dir="elsewhere", num_workers=4, batch_size=7),
        seed=9,
        data_dir=str(tiny_fashion_dir),
    )
    assert images.hparams.seed == 9 and images.hparams.num_workers == 0
    assert images.hparams.data_dir == str(tiny_fashion_dir) and images.hparams.batch_size == 7


def test_unset_overrides_leave_the_recipe_alone():
    data = build_datamodule(recipe(TOY, batch_size=5, n_test=8), batch_size=None, n_test=6)
    assert data.hparams.batch_size == 5 and data.hparams.n_test == 6
    no_args = build_datamodule({"data": {"class_path": TOY, "init_args": None}})
    assert no_args.hparams.batch_size == ToyDensityDataModule().hparams.batch_size


@pytest.mark.parametrize("bad", [{}, {"data": "ToyDensityDataModule"}, {"data": {"init_args": {}}}])
def test_a_recipe_without_a_data_class_is_refused(bad):
    with pytest.raises(
        ZooError, match=r"^the recipe has no data\.class_path, so the test data is unknown\. "
    ):
        datamodule_class(bad)


def test_evaluate_says_what_it_needs(tmp_path):
    with pytest.raises(ZooError, match="evaluate needs a zoo reference or a model"):
        evaluate()
    with pytest.raises(
        ZooError, match=r"^evaluate\(model=\.\.\.\) needs the recipe that names the data: "
    ):
        evaluate(model=ImageClassifier("mlp", width=4))
    folder = ImageClassifier("mlp", width=4).save_pretrained(tmp_path / "no-recipe")
    with pytest.raises(ZooError, match=r"has no recipe\.yaml; evaluate needs the recipe's data"):
        evaluate(folder)


def test_evaluate_seeds_torch_with_the_test_seed(monkeypatch):
    """Sampling inside an evaluation (e.g. dequantisation) is reproducible: torch is seeded with
    the test seed, or 0 when there is none, before the data module is built."""
    import nodezoo.zoo.evaluation as evaluation

    class Stop(Exception):
        pass

    class StopData:
        def prepare_data(self):
            raise Stop

    seen = []

    def record(*args, **kwargs):
        seen.append((torch.rand(1), kwargs))
        return StopData()

    monkeypatch.setattr(evaluation, "test_datamodule", record)
    model = ImageClassifier("mlp", width=4)
    for seed in (7, None):
        with pytest.raises(Stop):
            evaluate(model=model, recipe=recipe(FASHION), seed=seed, batch_size=3)
    torch.manual_seed(7)
    assert torch.equal(seen[0][0], torch.rand(1))
    torch.manual_seed(0)
    assert torch.equal(seen[1][0], torch.rand(1))
    assert seen[0][1] == {"seed": 7, "data_dir": None, "batch_size": 3}
