"""Crash and resume: kill -9 in mid-epoch then resume gives the uninterrupted run's numbers, a kill
while a checkpoint is written leaves the previous one readable, a NaN stops the run cleanly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, compose_cfg
from rnnlab.train import train
from rnnlab.utils.errors import TrainingDiverged
from test_sentiment_data import make_reviews, write_csv

TESTS = Path(__file__).resolve().parent
# Dropout on, so the resumed run must draw the masks the uninterrupted one drew (StepSeed).
CHARLM = ["task=charlm", *TINY, "model.dropout=0.3", "task.module.dropout=0.2", "trainer.max_epochs=2",
          "task.module.sample_length=0", "trainer.val_check_interval=0.5"]
SENTIMENT = ["task=sentiment", "model.hidden_size=8", "model.num_layers=1", "task.module.embedding_dim=8", "task.data.batch_size=8",
             "task.module.dropout=0.3", "task.module.embedding_dropout=0.2", "trainer.max_epochs=2", "trainer.log_every_n_steps=5",
             "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null", "trainer.val_check_interval=0.5"]


def train_py(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from conftest import make_corpus

    root = tmp_path_factory.mktemp("resume_data")
    return {"charlm": f"task.data.path={make_corpus(root / 'tiny.txt')}",
            "sentiment": f"task.data.path={write_csv(root / 'reviews.csv', make_reviews(240))}"}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["charlm", "sentiment"])
def test_kill_in_mid_epoch_then_resume_gives_the_uninterrupted_numbers(tmp_path: Path, data: dict[str, str], task: str) -> None:
    base = [data[task], *(CHARLM if task == "charlm" else SENTIMENT), "seed=7", "callbacks.step_checkpoint.every_n_train_steps=7", "threads=1"]
    straight = train_py(*base, f"hydra.run.dir={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    per_epoch = int(expected["step"]) // 2
    kill_at = per_epoch + per_epoch // 2 + 3  # in the middle of epoch 1, a few steps after a step checkpoint
    run = tmp_path / "crashed"
    crashed = train_py(*base, f"hydra.run.dir={run}", f"+callbacks.kill._target_=probes.KillAt", f"+callbacks.kill.step={kill_at}")
    assert crashed.returncode == -9 and not (run / "metrics.json").exists()
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    saved = last["global_step"]
    assert saved % per_epoch != 0 and kill_at - 7 <= saved < kill_at  # a mid-epoch checkpoint, the newest before the kill

    resumed = train_py(*base, f"hydra.run.dir={run}", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr + resumed.stdout
    got = json.loads((run / "metrics.json").read_text())
    keys = [k for k in expected if k != "train/time_sec" and not k.endswith("_per_sec")]  # all but the clock's
    assert {"val/loss" if task == "charlm" else "val/acc", "test/loss", "train/loss", "step"} <= set(keys)
    assert {k: got[k] for k in keys} == {k: expected[k] for k in keys}  # identical, not close


@pytest.mark.slow
def test_a_kill_while_saving_leaves_the_previous_checkpoint_whole(tmp_path: Path, data: dict[str, str]) -> None:
    run = tmp_path / "run"
    base = [data["charlm"], *CHARLM, "callbacks.step_checkpoint.every_n_train_steps=5", "threads=1", f"hydra.run.dir={run}"]
    # Saves: last.ckpt at step 5, 10 (steps only: validation is at 0.5 epoch = 20 steps); the 2nd dies half-written.
    done = train_py(*base, "+callbacks.kill._target_=probes.KillInSave", "+callbacks.kill.nth=2")
    assert done.returncode == -9
    last = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # readable: the first save, whole
    assert ckpt["global_step"] == 5
    torn = list(last.parent.glob(".last.ckpt.*.tmp"))
    assert len(torn) == 1 and torn[0].stat().st_size > 0  # the half-written file went beside it, not over it
    again = train_py(*base, f"ckpt_path={last}", "trainer.max_epochs=1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list(last.parent.glob(".last.ckpt.*.tmp"))  # the next save cleared it
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] > 5


def test_a_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, tiny_corpus: Path) -> None:
    overrides = [f"task.data.path={tiny_corpus}", *TINY, "logger=[]", "task.module.sample_length=0", "trainer.max_epochs=3",
                 "callbacks.step_checkpoint.every_n_train_steps=4", "+callbacks.nan._target_=probes.NanGradAt", "+callbacks.nan.step=10"]
    sys.path.insert(0, str(TESTS))
    try:
        with pytest.raises(TrainingDiverged) as err:
            train(compose_cfg(tmp_path, overrides))
    finally:
        sys.path.remove(str(TESTS))
    text = str(err.value)
    assert text.startswith("Training diverged at step 11 (epoch 0): the gradient norm is nan")
    assert "the last finite training loss was " in text and ", at step 10." in text  # steps counted from 1, as Lightning counts global_step
    assert f"{tmp_path / 'checkpoints'}/last.ckpt holds the last checkpoint written before it" in text
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 8  # the step-8 save; step 11 changed nothing
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    loss = float(text.split("the last finite training loss was ")[1].split(",")[0])
    assert math.isfinite(loss)


@pytest.mark.slow
def test_a_nan_exits_with_status_2_and_one_paragraph(tmp_path: Path, data: dict[str, str]) -> None:
    done = train_py(data["charlm"], *TINY, "logger=[]", f"hydra.run.dir={tmp_path / 'run'}", "+callbacks.nan._target_=probes.NanGradAt",
                    "+callbacks.nan.step=3")
    assert done.returncode == 2
    assert "Error: Training diverged at step 4 (epoch 0)" in done.stderr and "Traceback" not in done.stderr
