"""Each zoo guard rail refuses what it should, with a ZooError saying why.

Folders are written by ``save_pretrained`` from small untrained models (no training run needed):
an image classifier and an RNN forecaster, two different zoo architectures.
"""

from __future__ import annotations

import sys

import pytest

from nodezoo.models.classifier import ImageClassifier
from nodezoo.models.rnn_baseline import RNNBaseline
from nodezoo.zoo import ZooError, from_pretrained
from nodezoo.zoo.evaluation import build_datamodule, datamodule_class

CLASSIFIER_PATH = "nodezoo.models.classifier.ImageClassifier"
CLASSIFIER_ARGS = dict(backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard_rails")
    ImageClassifier(**CLASSIFIER_ARGS).save_pretrained(root / "classifier")
    RNNBaseline(hidden=4).save_pretrained(root / "forecaster")
    return root


def test_class_from_pretrained_refuses_another_architecture(folders):
    assert isinstance(RNNBaseline.from_pretrained(folders / "forecaster"), RNNBaseline)
    with pytest.raises(ZooError, match="not a RNNBaseline"):
        RNNBaseline.from_pretrained(folders / "classifier")
    with pytest.raises(ZooError, match="not a ImageClassifier"):
        ImageClassifier.from_pretrained(folders / "forecaster")


def test_pretrained_init_arg_refuses_another_architecture(folders):
    ImageClassifier(**CLASSIFIER_ARGS, pretrained=str(folders / "classifier"))  # accepted
    with pytest.raises(ZooError, match="'rnn-forecaster' model; it cannot initialise"):
        ImageClassifier(**CLASSIFIER_ARGS, pretrained=str(folders / "forecaster"))


def test_revision_is_refused_for_a_local_folder(folders):
    with pytest.raises(ZooError, match="local folder"):
        from_pretrained(folders / "classifier", revision="main")
    with pytest.raises(ZooError, match="local folder"):
        RNNBaseline.from_pretrained(folders / "forecaster", revision="v1")


def _recipe(class_path):
    return {"data": {"class_path": class_path, "init_args": {}}}


def test_recipe_may_name_nodezoo_data_classes():
    from nodezoo.data import SpiralsDataModule

    assert datamodule_class(_recipe("nodezoo.data.SpiralsDataModule")) is SpiralsDataModule


@pytest.mark.parametrize(
    "class_path",
    [
        "os.system",
        "builtins.eval",
        "subprocess.Popen",
        "nodezoo_evil.DataModule",  # shares the prefix but not the package
        "guard_rail_payload.DataModule",
    ],
)
def test_recipe_class_path_outside_nodezoo_is_never_imported(class_path, tmp_path, monkeypatch):
    """A card's recipe is a downloaded file: naming foreign code must not even import it."""
    marker = tmp_path / "imported"
    for module in ("guard_rail_payload", "nodezoo_evil"):
        (tmp_path / f"{module}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nclass DataModule:\n    pass\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("guard_rail_payload", "nodezoo_evil"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ZooError, match="not a nodezoo class"):
        build_datamodule(_recipe(class_path))
    assert not marker.exists()


def test_recipe_class_path_must_name_a_class():
    """Inside nodezoo a recipe may name classes only, not functions to call with its args."""
    with pytest.raises(ZooError, match="not a class"):
        build_datamodule(_recipe("nodezoo.zoo.folder.save_folder"))


@pytest.mark.parametrize(
    "class_path, message",
    [
        ("os.system", "not a nodezoo class"),
        ("nodezoo_evil.Model", "not a nodezoo class"),
        ("nodezoo.zoo.folder.save_folder", "not a class"),
    ],
)
def test_run_files_may_name_nodezoo_classes_only(class_path, message):
    """The same rule for a checkpoint's or run config's model class path."""
    from nodezoo.runs import RunFileError, import_model_class

    assert import_model_class(CLASSIFIER_PATH) is ImageClassifier
    with pytest.raises(RunFileError, match=message):
        import_model_class(class_path)
