"""End to end: smoke runs of every model, seeding, resume, sweeps, bad inputs, eval, TensorBoard, plots."""

from __future__ import annotations

import csv
import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_cfg, run_main, run_script
from rnnlab.evaluate import evaluate
from rnnlab.train import train
from rnnlab.utils.errors import UserError

MODELS = ["rnn", "gru", "lstm", "layernorm_lstm", "torch_rnn", "torch_gru", "torch_lstm"]


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_model(cfg_factory, model: str) -> None:
    metrics = train(cfg_factory(f"model={model}", "debug=fast", "model.num_layers=2"))
    assert math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["test/loss"]) and math.isfinite(metrics["train/loss"])
    assert metrics["step"] == 5
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))


def test_random_windows_train(cfg_factory) -> None:
    metrics = train(cfg_factory("task.data.windows=random", "debug=fast"))
    assert math.isfinite(metrics["val/loss"])


@pytest.mark.slow
def test_same_seed_same_metrics(cfg_factory) -> None:
    # Dropout and random windows both draw random numbers: the seed must cover them.
    args = ("task.data.windows=random", "model.dropout=0.3", "model.num_layers=2", "trainer.max_steps=12", "logger=[]", "callbacks.model_checkpoint=null", "+trainer.enable_checkpointing=false")
    first, second = train(cfg_factory(*args)), train(cfg_factory(*args))
    other = train(cfg_factory(*args, "seed=7"))
    keys = ["train/loss", "val/loss", "test/loss"]
    assert [first[k] for k in keys] == [second[k] for k in keys]
    assert first["val/loss"] != other["val/loss"]


def test_run_writes_tensorboard_checkpoints_and_metrics(tiny_run: tuple[Path, dict]) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    out, metrics = tiny_run
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    assert metrics["train/chars_per_sec"] > 0 and metrics["epoch"] == 2
    mux = EventMultiplexer().AddRunsFromDirectory(str(out))
    mux.Reload()
    (run,) = mux.Runs()
    scalars = set(mux.Runs()[run]["scalars"])
    curves = {"train/loss", "train/lr", "train/grad_norm", "train/chars_per_sec", "val/loss", "val/bpc", "val/ppl", "test/loss", "test/bpc", "test/ppl"}
    assert curves <= scalars
    assert len(mux.Scalars(run, "val/loss")) == 2  # one point per validation (2 epochs)
    texts = mux.PluginRunToTagToContent("text")[run]
    assert {"samples/temperature_0.8", "samples/greedy"} <= {t.removesuffix("/text_summary") for t in texts}
    hparams = mux.PluginRunToTagToContent("hparams")[run]
    assert "_hparams_/session_start_info" in hparams and "hparams/val_loss" in scalars
    # The csv logger (logger=[tensorboard,csv]) has the same curves.
    with open(out / "csv" / "metrics.csv") as f:
        assert {"train/loss", "val/loss", "val/bpc"} <= set(csv.DictReader(f).fieldnames)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
def test_resume_from_last_continues_where_it_stopped(tmp_path: Path, tiny_corpus: Path) -> None:
    # A scheduler too: its state must come back as well (LambdaLR keeps a step count).
    schedule = "task.module.scheduler={_target_:rnnlab.utils.schedules.constant,_partial_:true}"
    base = [f"task.data.path={tiny_corpus}", *TINY, "logger=[]", "task.module.sample_length=0", "test=false", schedule]
    first = train(compose_cfg(tmp_path / "a", [*base, "trainer.max_epochs=2"]))
    steps_per_epoch = int(first["step"]) // 2
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    # In place (the run's own directory, as `hydra.run.dir=<run>` does), so best.ckpt's score carries on too.
    resumed = train(compose_cfg(tmp_path / "a", [*base, "trainer.max_epochs=3", f"ckpt_path={last}"]))
    straight = train(compose_cfg(tmp_path / "c", [*base, "trainer.max_epochs=3"]))

    assert resumed["step"] == straight["step"] == 3 * steps_per_epoch
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    # Written when training ended (callbacks.step_checkpoint's save_last), after the third epoch.
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 3 * steps_per_epoch
    # Adam's step count only reaches 3 epochs' worth if its state came back from last.ckpt.
    adam_steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert adam_steps == {3.0 * steps_per_epoch}
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 3 * steps_per_epoch
    # Training has no randomness here (dropout 0, sequential windows): resumed == uninterrupted.
    assert resumed["val/loss_last"] == pytest.approx(straight["val/loss_last"], rel=1e-6)
    assert resumed["val/loss"] == pytest.approx(straight["val/loss"], rel=1e-6)  # the best over all 3 epochs


def test_resume_from_a_missing_checkpoint(cfg_factory, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="ckpt_path=.*nope.ckpt: no such checkpoint"):
        train(cfg_factory(f"ckpt_path={tmp_path / 'nope.ckpt'}"))


def test_resume_with_other_data_is_refused(tmp_path: Path, tiny_run: tuple[Path, dict]) -> None:
    other = tmp_path / "other.txt"
    other.write_text("0123456789 " * 400)
    cfg = compose_cfg(tmp_path / "r", [f"task.data.path={other}", *TINY, "logger=[]", f"ckpt_path={tiny_run[0] / 'checkpoints' / 'last.ckpt'}"])
    with pytest.raises(UserError, match="trained on other data: its vocab .* same task.data.path"):
        train(cfg)


@pytest.mark.slow
def test_multirun_sweep_over_models(tmp_path: Path, tiny_corpus: Path) -> None:
    sweep = tmp_path / "sweep"
    done = run_script("train.py", "-m", "task=charlm", "model=rnn,gru,lstm", f"task.data.path={tiny_corpus}", *TINY, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1", "2"):
        assert list((sweep / job / "tensorboard").glob("events.out.tfevents*")), job
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file() and (sweep / job / "metrics.json").is_file()
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "2"] and [r["status"] for r in rows] == ["ok"] * 3
    for row, model in zip(rows, ["rnn", "gru", "lstm"]):
        assert f"model={model}" in row["overrides"].split()
        assert math.isfinite(float(row["val/loss"])) and math.isfinite(float(row["test/loss"]))
    md = (sweep / "summary.md").read_text().splitlines()
    assert md[0].startswith("All jobs: `task=charlm") and "model=" not in md[0]  # shared overrides, once
    table = [line for line in md if line.startswith("| ")]
    assert [line.split(" | ")[1:3] for line in table[1:]] == [["ok", "model=rnn"], ["ok", "model=gru"], ["ok", "model=lstm"]]
    # `tensorboard --logdir <sweep>` sees the three jobs as three runs.
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(sweep))
    mux.Reload()
    assert sorted(Path(r).parts[0] for r in mux.Runs()) == ["0", "1", "2"]


# ---- bad inputs -------------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_file_exits_nonzero_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    done = run_script("train.py", f"task.data.path={missing}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert f"task.data.path={missing}: no such file" in done.stderr and "UTF-8 text file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # a run that wrote nothing but its config leaves no directory


def test_main_turns_a_user_error_into_exit_status_2(cfg_factory, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        run_main(cfg_factory("task.data.bptt=0"))
    assert info.value.code == 2
    assert "Error: task.data.bptt=0: must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, override, message",
    [
        (b"", None, "is empty"),
        (bytes(range(256)) * 8, None, "looks binary"),
        ("\u00e9t\u00e9 ".encode("latin-1") * 400, None, "is not UTF-8 text"),
        (None, "task.data.bptt=0", "task.data.bptt=0: must be a positive integer"),
        (None, "task.data.bptt=-5", "task.data.bptt=-5: must be a positive integer"),
        (None, "task.data.batch_size=1000", "task.data.batch_size=1000 and task.data.bptt=16 need at least 16001 training characters"),
    ],
    ids=["empty", "binary", "latin1", "bptt0", "bptt-neg", "batch-too-large"],
)
def test_bad_inputs_raise_user_errors(cfg_factory, tmp_path: Path, content: bytes | None, override: str | None, message: str) -> None:
    overrides = [override] if override else []
    if content is not None:
        path = tmp_path / "bad.txt"
        path.write_bytes(content)
        overrides.append(f"task.data.path={path}")
    with pytest.raises(UserError, match=message):
        train(cfg_factory(*overrides))


def test_offline_without_data_names_the_variable(cfg_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cfg = cfg_factory("task.data.path=null", f"paths.data_dir={tmp_path / 'empty'}")
    with pytest.raises(UserError, match="RNNLAB_DATA_DIR") as info:
        train(cfg)
    assert str((tmp_path / "empty" / "tinyshakespeare" / "input.txt").resolve()) in str(info.value)


# ---- evaluation and plots ---------------------------------------------------------------------


def test_eval_reproduces_the_best_checkpoint_metrics(cfg_factory, tiny_run: tuple[Path, dict], tiny_corpus: Path) -> None:
    out, metrics = tiny_run
    cfg = cfg_factory(f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", f"task.data.path={tiny_corpus}", "task.data.batch_size=4", "task.data.bptt=16", config_name="eval", tiny=False)
    result = evaluate(cfg)
    assert result["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-6)
    assert result["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)


@pytest.mark.slow
def test_eval_command_line(tmp_path: Path, tiny_run: tuple[Path, dict], tiny_corpus: Path) -> None:
    out, metrics = tiny_run
    done = run_script("eval.py", f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", f"task.data.path={tiny_corpus}", "task.data.batch_size=4", "task.data.bptt=16", f"paths.log_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"val/loss: {metrics['val/loss']:.4f}" in done.stdout
    # Eval runs have their own folder (configs/eval.yaml: log_subdir), apart from training runs.
    assert [p.name for p in tmp_path.iterdir()] == ["charlm"] and [p.name for p in (tmp_path / "charlm").iterdir()] == ["eval"]
    (run,) = (tmp_path / "charlm" / "eval").iterdir()
    assert json.loads((run / "metrics.json").read_text())["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)


@pytest.mark.slow
def test_plot_runs_writes_a_png(tmp_path: Path, tiny_run: tuple[Path, dict]) -> None:
    out, _ = tiny_run
    png = tmp_path / "plot.png"
    done = run_script("scripts/plot_runs.py", str(out), "--out", str(png), "--labels", "tiny")
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "tiny: last" in done.stdout
    missing = run_script("scripts/plot_runs.py", str(out), "--metric", "no/such", "--out", str(png))
    assert missing.returncode == 2 and "logged 'no/such'" in missing.stderr
