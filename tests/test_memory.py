"""Memory-span tasks: the generators against their definitions, the baselines against the
memoryless answer's actual loss, determinism, training through train.py, eval.py and predict.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import compose_cfg, run_main
from rnnlab.evaluate import evaluate
from rnnlab.predict import predict
from rnnlab.tasks.memory.data import ALPHABET, BLANK, DELIMITER, MemoryDataModule, baseline
from rnnlab.train import train

TINY = ["task=memory", "model=gru", "model.hidden_size=16", "task.data.T=6", "task.data.remember=3",
        "task.data.sizes=[640,64,64]", "task.data.batch_size=32", "trainer.max_epochs=1", "trainer.log_every_n_steps=5",
        "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def batch(name: str, T: int, remember: int = 10, n: int = 500, split: str = "val", seed: int = 0):
    dm = MemoryDataModule(name, T, remember, sizes=[n, n, n], data_seed=seed)
    dm.setup()
    return dm.splits[split][list(range(n))]


def test_copy_sequences_are_the_definition() -> None:
    b = batch("copy", T=7, remember=4)
    assert b.x.shape == b.y.shape == (500, 7 + 8) and (b.lengths == 15).all()
    symbols = b.x[:, :4]
    assert ((symbols >= 1) & (symbols <= ALPHABET)).all()
    assert (b.x[:, 4:10] == BLANK).all() and (b.x[:, 10] == DELIMITER).all() and (b.x[:, 11:] == BLANK).all()  # T-1 blanks, then 9
    assert (b.y[:, :11] == BLANK).all() and torch.equal(b.y[:, 11:], symbols)  # blank until the delimiter's end, then the symbols
    assert len({tuple(r) for r in symbols.tolist()}) > 450  # drawn, not repeated
    assert set(symbols.flatten().tolist()) == set(range(1, ALPHABET + 1))


def test_adding_sequences_are_the_definition() -> None:
    b = batch("adding", T=40)
    values, markers = b.x[..., 0], b.x[..., 1]
    assert b.x.shape == (500, 40, 2) and ((values >= 0) & (values < 1)).all()
    assert (markers.sum(1) == 2).all() and (markers[:, :20].sum(1) == 1).all()  # one marked step in each half
    assert torch.allclose(b.y, (values * markers).sum(1))


@pytest.mark.parametrize("T", [10, 100, 500])
def test_copy_baseline_is_the_memoryless_answers_loss(T: int) -> None:
    b = batch("copy", T, n=64)
    # Blank with certainty until the delimiter has been read, then a uniform guess among the 8 symbols.
    logits = torch.full((*b.x.shape, 10), -1e9)
    logits[:, : T + 10, BLANK] = 0
    logits[:, T + 10 :, 1 : ALPHABET + 1] = 0
    ce = F.cross_entropy(logits.flatten(0, 1), b.y.flatten())
    assert float(ce) == pytest.approx(baseline("copy", T), rel=1e-6) == 10 * math.log(8) / (T + 20)


def test_adding_baseline_is_always_answering_one() -> None:
    b = batch("adding", T=50, n=20000, split="train")
    assert float(((b.y - 1) ** 2).mean()) == pytest.approx(baseline("adding", 50), abs=0.005)
    assert baseline("adding", 50) == pytest.approx(1 / 6)


def test_data_is_fixed_by_its_seed_and_the_splits_differ() -> None:
    a, again, other = batch("adding", 20, n=50), batch("adding", 20, n=50), batch("adding", 20, n=50, seed=1)
    assert torch.equal(a.x, again.x) and not torch.equal(a.x, other.x)
    assert not torch.equal(a.x, batch("adding", 20, n=50, split="test").x)
    dm = MemoryDataModule("copy", 5, 3, sizes=[50, 10, 10])
    dm.setup()
    assert torch.equal(dm.splits["train"][[7, 3]].x, torch.stack([dm.splits["train"][[7]].x[0], dm.splits["train"][[3]].x[0]]))  # any batch order


@pytest.mark.parametrize("options", [["task.data.name=copy"], ["task.data.name=adding", "model=lstm", "+model.bidirectional=true"],
                                     ["task.data.name=copy", "model=layernorm_lstm"], ["task.data.name=adding", "model=rnn"]],
                         ids=["copy-gru", "adding-bilstm", "copy-layernorm", "adding-rnn"])
def test_train_logs_the_metric_beside_its_baseline(tmp_path: Path, options: list[str]) -> None:
    m = train(compose_cfg(tmp_path, [*TINY, *options, "logger=[]"]))
    name = options[0].split("=")[1]
    T = 6
    assert m["test/baseline"] == pytest.approx(baseline(name, T, 3)) and math.isfinite(m["val/loss"])  # val/loss: the monitor
    assert m["test/gain"] == pytest.approx(m["test/baseline"] / m["test/loss"], rel=1e-5)
    assert 0 <= m["test/acc"] <= 1 and math.isfinite(m["train/sequences_per_sec"])


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """A one-layer GRU-64 on copy with a short delay, trained until it recalls."""
    out = tmp_path_factory.mktemp("memory_run")
    overrides = [*TINY, "model.hidden_size=64", "model.num_layers=1", "task.data.sizes=[6400,256,256]", "trainer.max_epochs=4", "task.module.optimizer.lr=0.01"]
    return out, train(compose_cfg(out, overrides))


def test_a_short_delay_is_learnt_and_eval_and_predict_agree(copy_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, metrics = copy_run
    assert metrics["test/gain"] > 10 and metrics["test/acc"] > 0.95  # chance recall: 1/8
    ckpt = out / "checkpoints" / "best.ckpt"
    evaluated = evaluate(compose_cfg(tmp_path / "eval", ["task=memory", f"ckpt_path={ckpt}", "task.data.sizes=[6400,256,256]"], config_name="eval"))
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)  # T and remember came from the checkpoint, the split's size from here
    got = predict(compose_cfg(tmp_path, ["task=memory", f"ckpt_path={ckpt}", "input=813"], config_name="predict"))
    assert got == [("813", "813")]


def test_bad_inputs_exit_2_with_the_option_named(tmp_path: Path, copy_run: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    from rnnlab.entry import run
    from rnnlab.predict import main as predict_main

    ckpt = copy_run[0] / "checkpoints" / "best.ckpt"
    cases = [(lambda: run_main(compose_cfg(tmp_path / "a", [*TINY, "task.data.name=copying"])), "task.data.name='copying'"),
             (lambda: run_main(compose_cfg(tmp_path / "b", [*TINY, "task.data.T=1"])), "task.data.T=1"),
             (lambda: run(predict_main, compose_cfg(tmp_path, ["task=memory", f"ckpt_path={ckpt}", "input=8193"], config_name="predict")),
              "input 1 ('8193'): give 3 digits from 1 to 8")]
    for call, says in cases:
        with pytest.raises(SystemExit) as exit_info:
            call()
        assert exit_info.value.code == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-written


def test_gradients_through_time_read_the_copy_task(tmp_path: Path) -> None:
    import json

    train(compose_cfg(tmp_path, [*TINY, "model=rnn", "callbacks=diagnostics", "logger=[]"]))
    saved = json.loads((tmp_path / "grad_through_time.json").read_text())
    assert len(saved["norms"]) == 1 and len(saved["norms"][0]) == 6 + 2 * 3  # every step of a T=6, remember=3 sequence
    assert all(math.isfinite(n) and n > 0 for n in saved["norms"][0])
