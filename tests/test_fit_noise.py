"""`nodezoo fit` silences noise a user cannot act on: Lightning's install tips and W&B's warning
about the `anonymous` setting Lightning passes unset."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from nodezoo.lightning_cli import quiet_lightning, quiet_wandb_init


def test_lightning_install_tips_are_dropped_and_other_messages_kept(caplog):
    quiet_lightning()
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_unset_anonymous_setting_is_not_passed_to_wandb(tmp_path):
    unset = SimpleNamespace(_wandb_init={"project": "p", "anonymous": None})
    chosen = SimpleNamespace(_wandb_init={"project": "p", "anonymous": "allow"})
    quiet_wandb_init([unset, chosen])
    assert unset._wandb_init == {"project": "p"}
    assert chosen._wandb_init["anonymous"] == "allow"  # a user's explicit choice stays


def test_the_save_dir_exists_before_wandb_probes_git_in_it(tmp_path):
    run_dir = tmp_path / "runs" / "odenet"
    quiet_wandb_init([SimpleNamespace(_wandb_init={"dir": str(run_dir)})])
    assert run_dir.is_dir()  # else W&B warns "git root ... does not exist"
