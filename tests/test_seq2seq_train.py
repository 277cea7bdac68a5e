"""Seq2seq end to end: train.py on every attention and on each kind of source, TensorBoard reports,
eval.py, predict.py (beam, attention heatmaps), bad inputs through the entry (exit status 2)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from conftest import SHARED_DATA, compose_cfg, run_main
from rnnlab.evaluate import evaluate
from rnnlab.predict import predict
from rnnlab.tasks import load_module
from rnnlab.train import train

TINY = [
    "task=seq2seq",
    "model=gru",
    "model.hidden_size=16",
    "model.num_layers=1",
    "task.module.embedding_dim=8",
    "task.data.sizes=[300,40,40]",
    "task.data.max_len=6",
    "task.data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=5",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.model_summary=null",
]
FAST = ["+trainer.fast_dev_run=3", "callbacks.model_checkpoint=null", "logger=[]"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("options", [
    ["task.module.attention=none"], ["task.module.attention=bahdanau", "+model.bidirectional=true"],
    ["task.module.attention=luong_dot", "model=lstm", "model.num_layers=2"], ["task.module.attention=luong_general", "model=torch_lstm"],
    ["task.data.name=sort", "task.module.teacher_forcing={start: 1.0, end: 0.5, steps: 3}", "task.module.label_smoothing=0.1"],
    ["task.data.name=addition", "task.module.tie_embeddings=true", "task.module.decode.beam=3", "task.data.reverse_target=true"],
    ["task.data.name=dates", "task.module.decoder={layer: rnnlab, cell: lstm, hidden_size: 12, num_layers: 2}"],
], ids=["none", "bahdanau-bi", "luong_dot-lstm2", "luong_general-torch", "sort-schedule", "addition-tied-beam", "dates-lstm-decoder"])
def test_every_attention_and_task_trains(tmp_path: Path, options: list[str]) -> None:
    metrics = train(compose_cfg(tmp_path, [*TINY, *FAST, *options]))
    assert metrics["step"] == 3
    assert all(math.isfinite(metrics[k]) for k in ("val/exact", "test/bleu", "test/acc", "test/loss", "train/loss"))
    if "task.module.decode.beam=3" in options:
        assert math.isfinite(metrics["test/bleu_beam"]) and 0 <= metrics["test/exact_beam"] <= 1


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """A small bidirectional GRU with attention on reverse (1-5 symbols), 5 epochs, TensorBoard and CSV logs."""
    out = tmp_path_factory.mktemp("seq2seq_run")
    overrides = [*TINY, "+model.bidirectional=true", "model.hidden_size=32", "task.module.embedding_dim=16", "task.data.sizes=[3000,100,100]",
                 "task.data.max_len=5", "task.data.batch_size=32", "trainer.max_epochs=5", "logger=[tensorboard,csv]", "task.module.optimizer.lr=0.01"]
    return out, train(compose_cfg(out, overrides))


@pytest.mark.slow
def test_run_learns_and_writes_its_reports(reverse_run: tuple[Path, dict]) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    out, metrics = reverse_run
    assert metrics["val/exact"] > 0.5 and metrics["test/acc"] > 0.8  # chance: 1/36 a token
    mux = EventMultiplexer().AddRunsFromDirectory(str(out))
    mux.Reload()
    tags = {t for run in mux.Runs().values() for kind in ("images", "tensors", "scalars") for t in run.get(kind, [])}
    assert {"val/attention_0", "val/attention_2", "val/samples/text_summary", "val/bleu", "val/exact"} <= tags, sorted(tags)


@pytest.mark.slow
def test_eval_and_predict_from_the_checkpoint(reverse_run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, metrics = reverse_run
    ckpt = out / "checkpoints" / "best.ckpt"
    data = ["task=seq2seq", "task.data.sizes=[3000,100,100]", "task.data.max_len=5"]  # the data it was trained on
    evaluated = evaluate(compose_cfg(tmp_path / "eval", [*data, f"ckpt_path={ckpt}"], config_name="eval"))
    assert evaluated["test/exact"] == pytest.approx(metrics["test/exact"]) and evaluated["test/bleu"] == pytest.approx(metrics["test/bleu"])
    module = load_module(ckpt)
    expected = module.predict_text(["abc", "k2z9"])
    got = predict(compose_cfg(tmp_path, ["task=seq2seq", f"ckpt_path={ckpt}", "input=abc"], config_name="predict"))
    assert got == [("abc", expected[0])]
    heatmaps = tmp_path / "maps"
    got = predict(compose_cfg(tmp_path, ["task=seq2seq", f"ckpt_path={ckpt}", "input=k2z9", "task.predict.beam=1",
                                         "task.predict.attention=true", f"task.predict.attention_dir={heatmaps}"], config_name="predict"))
    assert got == [("k2z9", expected[1])] and (heatmaps / "attention_1.png").stat().st_size > 1000
    beam = predict(compose_cfg(tmp_path, ["task=seq2seq", f"ckpt_path={ckpt}", "input=k2z9", "task.predict.beam=4"], config_name="predict"))
    assert beam[0][1] == module.predict_text(["k2z9"], beam=4)[0]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_users_pairs_train_from_a_tsv_and_from_aligned_files(tmp_path: Path) -> None:
    rows = [(f"ein hund {i}", f"a dog {i}") for i in range(40)]
    tsv = _write(tmp_path / "pairs.tsv", "".join(f"{s}\t{t}\n" for s, t in rows))
    de = _write(tmp_path / "a.de", "".join(f"{s}\n" for s, _ in rows))
    en = _write(tmp_path / "a.en", "".join(f"{t}\n" for _, t in rows))
    for source in ([f"task.data.path={tsv}"], [f"task.data.files={{source: {de}, target: {en}}}"]):
        metrics = train(compose_cfg(tmp_path / "run", [*TINY, *FAST, "task.data.name=pairs", *source]))
        assert math.isfinite(metrics["test/bleu"])
    long = train(compose_cfg(tmp_path / "long", [*TINY, *FAST, "task.data.name=pairs", f"task.data.path={tsv}", "task.data.max_source_len=2"]))
    assert math.isfinite(long["test/bleu"])  # "ein hund 7": 3 words, cut to 2 with a warning
    bpe = train(compose_cfg(tmp_path / "bpe", [*TINY, *FAST, "task.data.name=pairs", f"task.data.path={tsv}", "task.data.tokenizer=bpe",
                                               "task.data.bpe_vocab_size=60"]))
    assert math.isfinite(bpe["test/bleu"])


def _misaligned(d: Path) -> list[str]:
    return [f"task.data.files={{source: {_write(d / 'a.de', 'a' + chr(10) + 'b' + chr(10))}, target: {_write(d / 'a.en', 'a' + chr(10))}}}"]


def _no_tab(d: Path) -> list[str]:
    return [f"task.data.path={_write(d / 'p.tsv', 'a' + chr(9) + 'b' + chr(10) + 'no tab here' + chr(10))}"]


def _empty_side(d: Path) -> list[str]:
    return [f"task.data.path={_write(d / 'p.tsv', 'a' + chr(9) + 'b' + chr(10) + 'c' + chr(9) + ' ' + chr(10))}"]


def _latin1(d: Path) -> list[str]:
    path = d / "p.tsv"
    path.write_bytes(b"a\tb\ncaf\xe9\tcafe\n")
    return [f"task.data.path={path}"]


def _too_long(d: Path) -> list[str]:
    return [f"task.data.path={_write(d / 'p.tsv', 'a b c d e' + chr(9) + 'b' + chr(10))}", "task.data.max_source_len=3", "task.data.too_long=error"]


BAD = {
    "empty side": (_empty_side, r"p\.tsv, line 2: the target is empty"),
    "not utf-8": (_latin1, r"p\.tsv is not UTF-8 text: line 2 holds byte 0xe9"),
    "too long": (_too_long, r"p\.tsv, line 1: the source has 5 tokens, more than task\.data\.max_source_len=3"),
    "misaligned": (_misaligned, r"a\.de has 2 lines but .*a\.en has 1; the two files must be line-aligned"),
    "no tab": (_no_tab, r"p\.tsv, line 2: expected 'source<TAB>target'"),
    "no file": (lambda d: [f"task.data.path={d / 'missing.tsv'}"], r"task\.data\.path=.*missing\.tsv: no such file"),
    "both sources": (lambda d: [f"task.data.path={d / 'x.tsv'}", "task.data.files={source: a, target: b}"], r"give either task\.data\.path"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_pairs_exit_2_naming_the_file(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    make, message = BAD[case]
    cfg = compose_cfg(tmp_path / "run", [*TINY, "task.data.name=pairs", *make(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        run_main(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "Traceback" not in err and re.search(message, err), err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("override, message", [
    ("task.data.name=wmt", r"task\.data\.name='wmt': choose one of"),
    ("task.module.attention=dot", r"task\.module\.attention='dot': must be one of"),
    ("task.module.monitor=val/bleu_beam", r"task\.module\.monitor='val/bleu_beam': must be a greedy metric unless"),
    ("task.module.decoder={layer: rnnlab, cell: gru, hidden_size: 8, bidirectional: true}", r"decoder\.bidirectional"),
    ("task.module.teacher_forcing=1.5", r"task\.module\.teacher_forcing=1\.5"),
    ("task.data.reverse_target=maybe", r"task\.data\.reverse_target='maybe': must be true or false"),
])
def test_bad_options_exit_2(tmp_path: Path, override: str, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_main(compose_cfg(tmp_path / "run", [*TINY, override]))
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "multi30k" / "train.de.gz").is_file(), reason="no local copy of Multi30k")
def test_multi30k_trains_from_the_data_directory(tmp_path: Path) -> None:
    overrides = [*TINY, "task.data.name=multi30k", f"paths.data_dir={SHARED_DATA}", "task.data.min_freq=2",
                 "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "logger=[]",
                 "callbacks.model_checkpoint=null"]
    metrics = train(compose_cfg(tmp_path, overrides))
    assert metrics["step"] == 5 and math.isfinite(metrics["test/bleu"]) and math.isfinite(metrics["test/loss"])
