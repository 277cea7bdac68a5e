"""Sentiment end to end: train.py on every model and the baseline, TensorBoard reports, eval.py,
predict.py (in process and on the command line), bad inputs through the entry (exit status 2)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SHARED_DATA, compose_cfg, run_main, run_script
from rnnlab.evaluate import evaluate
from rnnlab.predict import predict
from rnnlab.tasks import load_module
from rnnlab.tasks.sentiment import SentimentModule
from rnnlab.train import train
from rnnlab.utils.errors import UserError
from test_sentiment_data import BAD, bad_source, make_reviews, write_csv

# Seconds, not minutes: 240 short sentences, batches of 8, an 8-unit layer.
TINY = [
    "task=sentiment",
    "model.hidden_size=8",
    "model.num_layers=1",
    "task.module.embedding_dim=8",
    "task.data.batch_size=8",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=5",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.model_summary=null",
]
FAST = ["+trainer.fast_dev_run=3", "callbacks.model_checkpoint=null"]  # debug=fast sets charlm's sample_length
MODELS = ["rnn", "gru", "lstm", "layernorm_lstm", "torch_rnn", "torch_gru", "torch_lstm"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("reviews") / "reviews.csv", make_reviews(240))


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory, reviews: Path) -> tuple[Path, dict[str, float]]:
    """A tiny bidirectional GRU trained for 4 epochs with TensorBoard and CSV logs: (run dir, metrics)."""
    out = tmp_path_factory.mktemp("sentiment_run")
    overrides = [f"task.data.path={reviews}", *TINY, "model=gru", "+model.bidirectional=true", "task.module.pooling=attention",
                 "task.module.optimizer.lr=0.02", "trainer.max_epochs=4", "logger=[tensorboard,csv]"]
    return out, train(compose_cfg(out, overrides))


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains(tmp_path: Path, reviews: Path, model: str) -> None:
    metrics = train(compose_cfg(tmp_path, [f"task.data.path={reviews}", *TINY, *FAST, f"model={model}", "model.num_layers=2", "logger=[]"]))
    assert metrics["step"] == 3
    assert all(math.isfinite(metrics[k]) for k in ("val/acc", "test/acc", "test/f1", "test/loss", "train/loss"))


@pytest.mark.parametrize("options", [["task.module.encoder=bag"], ["task.module.encoder=bag", "task.module.bigram_buckets=0"], ["+model.bidirectional=true", "task.module.pooling=last"],
                                     ["task.module.ensemble=2"],
                                     ["task.module.ensemble=[{},{cell:lstm,bidirectional:true},{pooling:mean}]", "task.data.orders=3",
                                      "task.module.word_dropout=0.2", "task.module.lm_weight=0.5", "task.module.lm_vocab=50"]],
                         ids=["bag", "bag-words", "bi-last", "ensemble", "mixed-ensemble-orders-lm"])
def test_baseline_and_bidirectional_train(tmp_path: Path, reviews: Path, options: list[str]) -> None:
    metrics = train(compose_cfg(tmp_path, [f"task.data.path={reviews}", *TINY, *FAST, *options, "logger=[]"]))
    assert metrics["step"] == 3 and math.isfinite(metrics["test/acc"])


@pytest.mark.slow
def test_run_learns_and_writes_its_reports(sentiment_run: tuple[Path, dict]) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    out, metrics = sentiment_run
    assert metrics["val/acc"] >= 0.8 and metrics["test/acc"] >= 0.8  # the words decide the label: easy to learn (chance: 0.5)
    assert metrics["val/acc"] >= metrics["val/acc_last"] and metrics["train/sentences_per_sec"] > 0
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    mux = EventMultiplexer().AddRunsFromDirectory(str(out / "tensorboard"))
    mux.Reload()
    scalars = {tag for tags in mux.Runs().values() for tag in tags["scalars"]}
    assert {"train/loss", "train/sentences_per_sec", "val/loss", "val/acc", "val/f1", "test/loss", "test/acc", "test/f1", "hparams/test_acc"} <= scalars
    (run,) = [r for r, tags in mux.Runs().items() if tags["images"]]
    assert len(mux.Images(run, "val/confusion_matrix")) == 4  # one per validation
    texts = mux.PluginRunToTagToContent("text")[run]
    assert "val/misclassified/text_summary" in texts


def test_eval_gives_the_tested_metrics(sentiment_run: tuple[Path, dict], reviews: Path, tmp_path: Path) -> None:
    out, metrics = sentiment_run
    cfg = compose_cfg(tmp_path, ["task=sentiment", f"task.data.path={reviews}", f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}"], "eval")
    got = evaluate(cfg)
    assert got["test/acc"] == pytest.approx(metrics["test/acc"]) and got["test/f1"] == pytest.approx(metrics["test/f1"])
    assert got["val/acc"] == pytest.approx(metrics["val/acc"])


def test_predict_finds_the_task_in_the_checkpoint(sentiment_run: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt = sentiment_run[0] / "checkpoints" / "best.ckpt"
    inputs = ["a gripping, funny film", "dull and tedious"]
    (tmp_path / "in.txt").write_text("\n".join(inputs) + "\n")
    expected = SentimentModule.from_checkpoint(ckpt).predict_text(inputs)
    # No task= given: predict.yaml's default task is charlm, the checkpoint says sentiment.
    pairs = predict(compose_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input_file={tmp_path / 'in.txt'}"], "predict"))
    assert pairs == list(zip(inputs, expected))
    assert [line.split("\t")[0] for line in expected] == ["pos", "neg"]  # the CSV's label names
    full = predict(compose_cfg(tmp_path, [f"ckpt_path={ckpt}", "input=great", "task=sentiment", "task.predict.all_labels=true"], "predict"))
    assert full[0][1].split("\t")[2].split()[0].startswith("neg=")
    with pytest.raises(UserError, match=r"task.predict.length: the sentiment task has no such option; it takes \['all_labels', 'batch_size'\]"):
        predict(compose_cfg(tmp_path, [f"ckpt_path={ckpt}", "input=great", "task=sentiment", "+task.predict.length=3"], "predict"))
    with pytest.raises(UserError, match=r"holds a sentiment model, but the config is for task charlm: add task=sentiment"):
        predict(compose_cfg(tmp_path, [f"ckpt_path={ckpt}", "input=great", "task=charlm"], "predict"))


def test_resume_with_other_data_is_refused(sentiment_run: tuple[Path, dict], tmp_path: Path) -> None:
    other = write_csv(tmp_path / "other.csv", [(f"{t} extra words", lab) for t, lab in make_reviews(80, seed=5)])
    cfg = compose_cfg(tmp_path / "r", [f"task.data.path={other}", *TINY, "logger=[]", f"ckpt_path={sentiment_run[0] / 'checkpoints' / 'last.ckpt'}"])
    with pytest.raises(UserError, match=r"trained on other data: its vocab .* same task.data.path"):
        train(cfg)


def _overrides(kwargs: dict) -> list[str]:
    """SentimentDataModule keyword arguments as command-line overrides."""
    out = []
    for key, value in kwargs.items():
        if isinstance(value, dict):
            value = "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
        elif isinstance(value, list):
            value = "[" + ",".join(value) + "]"
        out.append(f"task.data.{key}={value}")
    return out


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_exits_2_naming_file_and_line(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    cfg = compose_cfg(tmp_path / "run", [*TINY, *_overrides(bad_source(tmp_path, case))])
    with pytest.raises(SystemExit) as exit_info:
        run_main(cfg)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("Error: ") and "Traceback" not in message
    assert re.search(BAD[case], message), message
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # nothing half-written


def test_orders_that_do_not_match_the_ensemble_exit_2_before_training(tmp_path: Path, reviews: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = compose_cfg(tmp_path / "run", [f"task.data.path={reviews}", *TINY, "task.module.ensemble=2", "task.data.orders=3"])
    with pytest.raises(SystemExit) as exit_info:
        run_main(cfg)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert re.search(r"task\.data\.orders=3 .* the model has 2 \(task\.module\.ensemble\): set task\.data\.orders to 2, or 1", message), message
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_command_line_train_then_predict(tmp_path: Path, reviews: Path) -> None:
    """The user's path: train.py, then predict.py on its best checkpoint, a comma in the sentence, no task=."""
    run = tmp_path / "run"
    done = run_script("train.py", f"task.data.path={reviews}", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = run / "checkpoints" / "best.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["rnnlab_task"] == "sentiment"
    done = subprocess.run([sys.executable, "predict.py", f"ckpt_path={ckpt}", "input=a gripping, funny film"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = load_module(ckpt).predict_text(["a gripping, funny film"])
    assert done.stdout == expected[0] + "\n"
    label, probability = done.stdout.rstrip("\n").split("\t")
    assert label in ("neg", "pos") and 0.5 <= float(probability) <= 1.0
    # A bad input on the command line: exit status 2, one paragraph, no run directory left.
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,pos\nbad film,neutral\n")
    done = run_script("train.py", f"task.data.path={bad}", "task.data.labels=[neg,pos]", *TINY, f"hydra.run.dir={tmp_path / 'bad_run'}")
    assert done.returncode == 2
    assert done.stderr.strip().split("\n\n")[-1].startswith(f"Error: {bad}, line 3: label 'neutral' is not one of the declared labels")
    assert not (tmp_path / "bad_run").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "sst2" / "train.tsv").is_file(), reason="no local copy of SST-2")
def test_sst2_trains_by_default(tmp_path: Path) -> None:
    overrides = ["task=sentiment", f"paths.data_dir={SHARED_DATA}", *TINY[1:], "trainer.limit_train_batches=20", "trainer.limit_test_batches=2", "logger=[]", "callbacks.model_checkpoint=null"]
    metrics = train(compose_cfg(tmp_path, overrides))
    assert metrics["step"] == 20 and 0.3 < metrics["val/acc"] < 1.0 and math.isfinite(metrics["test/f1"])


def test_pretrained_vectors_through_train_py(tmp_path: Path, reviews: Path, capsys: pytest.CaptureFixture) -> None:
    """task.embeddings.path: frozen vectors are the trained model's rows; a bad file exits 2, nothing written."""
    vectors = {"film": [0.25] * 8, "Great": [-0.5] * 8}
    glove = tmp_path / "vectors.txt"
    glove.write_text("".join(w + " " + " ".join(map(str, v)) + "\n" for w, v in vectors.items()))
    run = tmp_path / "run"
    metrics = train(compose_cfg(run, [f"task.data.path={reviews}", *TINY, "logger=[]", f"task.embeddings.path={glove}",
                                      "task.embeddings.freeze=true"]))
    assert math.isfinite(metrics["test/acc"])
    module = load_module(run / "checkpoints" / "best.ckpt")
    weight = module.net.embed.weight
    for word, vec in vectors.items():
        assert torch.equal(weight[module.vocab.encode([word.lower()])[0]], torch.tensor(vec))
    glove.write_text("film 0.25 0.25\n")
    cfg = compose_cfg(tmp_path / "bad_run", [f"task.data.path={reviews}", *TINY, f"task.embeddings.path={glove}"])
    with pytest.raises(SystemExit) as exit_info:
        run_main(cfg)
    assert exit_info.value.code == 2
    assert re.search(r"vectors\.txt, line 1: expected a word and 8 numbers, got 2", capsys.readouterr().err)
    assert not (tmp_path / "bad_run" / "checkpoints").exists()
