"""Char-LM model and Lightning module: shapes, TBPTT state, honest validation loss, sampling, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import run_script
from rnnlab.sample import sample
from rnnlab.tasks.charlm import CharLMDataModule, CharLMModule
from rnnlab.tasks.charlm.data import IGNORE_INDEX, UNK, StreamWindows
from rnnlab.tasks.settings import build_optimization
from rnnlab.utils.errors import UserError

VOCAB = list("\n !,.:?abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def tiny_module(cell: str = "lstm", layer: str = "rnnlab", vocab: list[str] = VOCAB, **kwargs) -> CharLMModule:
    model = {"layer": layer, "cell": cell, "hidden_size": 12, "num_layers": 2, "dropout": 0.0}
    return CharLMModule(vocab=vocab, model=model, embedding_dim=6, **kwargs)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_forward_shapes_and_state(cell: str) -> None:
    torch.manual_seed(0)
    module = tiny_module(cell)
    x = torch.randint(0, len(VOCAB), (3, 5))
    logits, state = module(x)
    assert logits.shape == (3, 5, len(VOCAB))
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 3, 12)
    logits2, _ = module(x, state)  # a carried state changes the prediction
    assert not torch.allclose(logits, logits2)


def test_weight_tying() -> None:
    model = {"layer": "rnnlab", "cell": "gru", "hidden_size": 6, "num_layers": 1, "dropout": 0.0}
    module = CharLMModule(vocab=VOCAB, model=model, embedding_dim=6, tie_weights=True)
    assert module.net.head.weight is module.net.embed.weight
    with pytest.raises(UserError, match="tie_weights=true needs .* model.hidden_size"):
        CharLMModule(vocab=VOCAB, model={**model, "hidden_size": 8}, embedding_dim=6, tie_weights=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model={"layer": "rnnlab", "cell": "lstm", "hidden_size": 0}), r"^model.hidden_size=0: Recurrent: hidden_size must be a positive integer, got 0\. Fix it"),
        (dict(model={"layer": "keras", "cell": "lstm", "hidden_size": 4}), r"^model.layer='keras': choose one of \['rnnlab', 'torch'\]"),
        (dict(embedding_dim=0), r"^task.module.embedding_dim=0: must be a positive integer"),
        (dict(dropout=1.5), r"^task.module.dropout=1.5: must be a number in \[0, 1\)"),
        (dict(optimizer={"name": "adam", "lr": float("nan")}), r"^task.module.optimizer.lr=nan: the learning rate must be a positive finite number"),
        (dict(optimizer={"name": "sgd", "lr": 0.1, "momentum": -1}), r"^task.module.optimizer=.*torch.optim.SGD refuses these arguments \(Invalid momentum value: -1"),
        (dict(optimizer={"name": "lion", "lr": 0.1}), r"^task.module.optimizer.name='lion': choose one of \['adam', 'adamw', 'rmsprop', 'sgd'\]"),
        (dict(scheduler={"name": "warmup_cosine", "warmup": 3}), r"^task.module.scheduler: warmup_cosine takes \['warmup_steps', 'min_lr_ratio'\], not \['warmup'\]"),
    ],
    ids=["hidden0", "layer", "embedding0", "dropout", "lr-nan", "momentum", "optimizer-name", "schedule-arg"],
)
def test_bad_arguments_are_user_errors_naming_the_config_key(kwargs: dict, message: str) -> None:
    args = dict(vocab=VOCAB, model={"layer": "rnnlab", "cell": "lstm", "hidden_size": 4}) | kwargs
    with pytest.raises(UserError, match=message):
        CharLMModule(**args)


def test_settings_are_stored_plain_and_the_hydra_spelling_reads_through_the_same_tables() -> None:
    hydra_style = CharLMModule(
        vocab=VOCAB,
        model={"_target_": "rnnlab.nn.TorchRecurrent", "_partial_": True, "cell": "gru", "hidden_size": 4},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.01, "betas": [0.8, 0.9]},
        scheduler={"_target_": "rnnlab.utils.schedules.warmup_cosine", "_partial_": True, "warmup_steps": 2},
    )
    assert hydra_style.hparams.model == {"layer": "torch", "cell": "gru", "hidden_size": 4}
    assert hydra_style.hparams.optimizer == {"name": "adamw", "lr": 0.01, "betas": [0.8, 0.9]}
    assert hydra_style.hparams.scheduler == {"name": "warmup_cosine", "warmup_steps": 2}
    assert tiny_module().hparams.optimizer == {"name": "adam", "lr": 2e-3}  # the default, spelled out
    built = build_optimization(hydra_style.parameters(), hydra_style.hparams.optimizer, hydra_style.hparams.scheduler, total_steps=10)
    assert type(built["optimizer"]) is torch.optim.AdamW and built["optimizer"].defaults["betas"] == (0.8, 0.9)
    assert built["optimizer"].param_groups[0]["lr"] == pytest.approx(0.01 / 2)  # warm-up step 0 of 2
    with pytest.raises(UserError, match=r"model._target_='os.system' is not one rnnlab knows"):
        CharLMModule(vocab=VOCAB, model={"_target_": "os.system", "cell": "lstm", "hidden_size": 4})


def test_training_carries_the_detached_state_and_resets_on_request() -> None:
    torch.manual_seed(0)
    module = tiny_module("gru")
    ds = StreamWindows(torch.randint(0, len(VOCAB), (200,)), batch_size=2, bptt=10)
    module.log = lambda *a, **k: None  # no Trainer here: logging is not what this test checks
    module.trainer = type("T", (), {"optimizers": [torch.optim.SGD(module.parameters(), lr=0.1)]})()
    x0, y0, r0 = ds[0]
    x1, y1, r1 = ds[1]
    module.training_step(ds[0], 0)
    carried = module._train_state
    assert carried is not None and not carried.requires_grad
    loss = module.training_step(ds[1], 1)
    logits, _ = module.net(x1, carried)
    assert torch.allclose(loss, F.cross_entropy(logits.flatten(0, 1), y1.flatten()))
    loss_reset = module.training_step((x1, y1, True), 1)  # reset: from a zero state
    logits0, _ = module.net(x1)
    assert torch.allclose(loss_reset, F.cross_entropy(logits0.flatten(0, 1), y1.flatten()))


@pytest.mark.parametrize("layer", ["rnnlab", "torch"])
def test_val_loss_is_the_mean_over_the_whole_split(tmp_path: Path, tiny_corpus: Path, layer: str) -> None:
    """Windowed evaluation with the carried state == one forward over each whole stream."""
    torch.manual_seed(0)
    dm = CharLMDataModule(path=str(tiny_corpus), batch_size=4, bptt=7, eval_batch_size=3)
    dm.setup()
    module = tiny_module("lstm", layer, vocab=dm.model_kwargs()["vocab"], sample_length=0)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    (result,) = trainer.validate(module, datamodule=dm, verbose=False)

    full = StreamWindows(dm.splits["val"], batch_size=3, bptt=10**9, cover_all=True)
    x, y, _ = full[0]  # every stream in one window: no truncation at all
    module.eval()
    with torch.no_grad():
        logits, _ = module(x)
    per_char = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    count = int((y != IGNORE_INDEX).sum())
    assert count == dm.splits["val"].numel() - 1
    expected = float(per_char) / count
    assert result["val/loss"] == pytest.approx(expected, rel=1e-5)
    assert result["val/bpc"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert result["val/ppl"] == pytest.approx(math.exp(expected), rel=1e-5)


# ---- sampling ---------------------------------------------------------------------------------


def test_generate_length_vocabulary_and_modes() -> None:
    torch.manual_seed(0)
    module = tiny_module("lstm")
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    text = module.generate("ROMEO:", 300, temperature=0.8, generator=g(1))
    assert len(text) == 300 and set(text) <= set(VOCAB)
    assert module.generate("ROMEO:", 300, temperature=0.8, generator=g(1)) == text  # seeded: reproducible
    greedy = module.generate("ROMEO:", 50, temperature=0)
    assert module.generate("ROMEO:", 50, temperature=0) == greedy
    assert module.generate("ROMEO:", 50, temperature=1.0, top_k=1, generator=g(2)) == greedy  # top-1 is greedy
    assert module.generate("a", 0) == ""
    assert module.training  # generate restores the mode it found
    # Text starts at a line break: a prime without one is read after one.
    assert module.generate("ROMEO:", 50, temperature=0) == module.generate("\nROMEO:", 50, temperature=0)


def test_generate_never_writes_the_unknown_marker() -> None:
    torch.manual_seed(0)
    module = tiny_module("gru", vocab=["a", "b", UNK])
    with torch.no_grad():
        module.net.head.bias.copy_(torch.tensor([0.0, 0.0, 50.0]))  # the model all but insists on UNK
    text = module.generate("ab", 100, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert len(text) == 100 and UNK not in text


@pytest.mark.parametrize(
    "prime, length, options, message",
    [("", 5, {}, "prime is empty"), ("ROMEO: 7", 5, {}, "lacks: '7'"), ("a", -1, {}, "length=-1"),
     ("a", 5, {"top_k": 0}, "top_k=0: must be a positive integer"), ("a", 5, {"temperature": "hot"}, "temperature='hot': must be a number")],
)
def test_generate_rejects_bad_arguments(prime: str, length: int, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        tiny_module().generate(prime, length, **options)


def test_predict_text_continues_each_input() -> None:
    torch.manual_seed(0)
    module = tiny_module("gru")
    outputs = module.predict_text(["ROMEO:", "a b"], length=30, temperature=0.8, top_k=5, seed=7)
    gen = torch.Generator().manual_seed(7)  # one generator for all inputs, in order
    expected = [p + module.generate(p, 30, 0.8, 5, gen) for p in ["ROMEO:", "a b"]]
    assert outputs == expected and [len(o) for o in outputs] == [36, 33]
    assert module.predict_text(["xy"], length=10, temperature=0) == ["xy" + module.generate("xy", 10, temperature=0)]
    with pytest.raises(UserError, match="input 2 is empty"):
        module.predict_text(["a", ""], length=3)
    with pytest.raises(UserError, match="input 1 contains characters the vocabulary lacks: '7'"):
        module.predict_text(["7"], length=3)


def test_derived_metrics_are_bits_and_perplexity() -> None:
    derived = tiny_module().derived_metrics({"val/loss": 1.5, "test/loss": 2.0, "train/loss": 9.0})
    assert derived == {"val/bpc": 1.5 / math.log(2), "val/ppl": math.exp(1.5), "test/bpc": 2.0 / math.log(2), "test/ppl": math.exp(2.0)}
    assert tiny_module().derived_metrics({"epoch": 1.0}) == {}


def test_checkpoints_load_weights_only(tiny_run: tuple[Path, dict]) -> None:
    out, _ = tiny_run
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(out / "checkpoints" / name, map_location="cpu", weights_only=True)
        vocab = ckpt["hyper_parameters"]["vocab"]
        assert isinstance(vocab, list) and all(isinstance(c, str) and len(c) == 1 for c in vocab)
    module = CharLMModule.from_checkpoint(out / "checkpoints" / "best.ckpt")
    assert not module.training and module.vocab.chars == vocab
    # Plain settings only: names from fixed tables, no import path anywhere in the hyper-parameters.
    hp = ckpt["hyper_parameters"]
    assert hp["model"] == {"layer": "rnnlab", "cell": "lstm", "hidden_size": 16, "num_layers": 1, "dropout": 0.0}
    assert hp["optimizer"] == {"name": "adam", "lr": 2e-3} and hp["scheduler"] is None
    assert "_target_" not in repr(hp) and ckpt["rnnlab_task"] == "charlm"


def test_a_checkpoint_cannot_make_loading_run_code(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = tiny_run
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    marker = tmp_path / "pwned"
    payload = {"_target_": "pathlib.Path.touch", "self": str(marker)}
    hp = ckpt["hyper_parameters"]
    for key, value, message in [
        ("model", {**hp["model"], "_target_": "os.system"}, "model._target_='os.system' is not one rnnlab knows"),
        ("model", {**hp["model"], "hidden_size": payload}, "model: the values under \\['hidden_size'\\] are not plain"),
        ("optimizer", {"_target_": "os.system", "command": "touch x"}, "task.module.optimizer._target_='os.system' is not one"),
        ("scheduler", {"name": "builtins.exec"}, "task.module.scheduler.name='builtins.exec': choose one of"),
    ]:
        torch.save({**ckpt, "hyper_parameters": {**hp, key: value}}, tmp_path / "bad.ckpt")
        with pytest.raises(UserError, match=message):
            CharLMModule.from_checkpoint(tmp_path / "bad.ckpt")
    assert not marker.exists()


def test_checkpoints_from_before_the_plain_settings_still_load(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = tiny_run
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    legacy = {  # how checkpoints spelled the layer and optimizer before: Hydra partials
        **hp,
        "model": {"_target_": "rnnlab.nn.Recurrent", "_partial_": True, **{k: v for k, v in hp["model"].items() if k != "layer"}},
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-3},
    }
    old = {k: v for k, v in ckpt.items() if k != "rnnlab_task"} | {"hyper_parameters": legacy}
    torch.save(old, tmp_path / "old.ckpt")
    module = CharLMModule.from_checkpoint(tmp_path / "old.ckpt")
    assert module.hparams.model == hp["model"] and module.hparams.optimizer == hp["optimizer"]
    new = CharLMModule.from_checkpoint(out / "checkpoints" / "best.ckpt")
    assert module.generate("KING:", 40, temperature=0) == new.generate("KING:", 40, temperature=0)


def test_sampler_from_a_checkpoint(tiny_run: tuple[Path, dict], tiny_corpus: Path) -> None:
    out, _ = tiny_run
    vocab = set(tiny_corpus.read_text())
    cfg = OmegaConf.create({"ckpt_path": str(out / "checkpoints" / "best.ckpt"), "prime": "KING:\\n", "length": 120, "temperature": 0.8, "top_k": 5, "seed": 3, "device": "cpu"})
    text = sample(cfg)
    assert len(text) == 120 and set(text) <= vocab
    assert sample(cfg) == text
    with pytest.raises(UserError, match="top_k=0"):
        sample(OmegaConf.merge(cfg, {"top_k": 0}))
    with pytest.raises(UserError, match="no such checkpoint"):
        sample(OmegaConf.merge(cfg, {"ckpt_path": str(out / "nope.ckpt")}))


@pytest.mark.slow
def test_sample_command_line(tiny_run: tuple[Path, dict], tiny_corpus: Path) -> None:
    out, _ = tiny_run
    ckpt = out / "checkpoints" / "last.ckpt"
    done = run_script("sample.py", f"ckpt_path={ckpt}", "prime=KING:", "length=80", "temperature=0.8", "top_k=4", "seed=0")
    assert done.returncode == 0, done.stderr
    printed = done.stdout.removesuffix("\n")
    assert printed.startswith("KING:") and len(printed) == len("KING:") + 80
    assert set(printed) <= set(tiny_corpus.read_text())
    bad = run_script("sample.py", f"ckpt_path={ckpt}", "prime=KING7:", "length=10")
    assert bad.returncode == 2 and "prime contains characters the vocabulary lacks: '7'" in bad.stderr
