"""Bad inputs at every entry point: one paragraph that names the option or file and the fix, exit
status 2, no traceback, and never torch's advice to load a checkpoint with weights_only=False."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_cfg, run_script
from rnnlab.entry import run
from rnnlab.evaluate import evaluate
from rnnlab.predict import predict
from rnnlab.sample import sample
from rnnlab.train import train
from rnnlab.utils.errors import UserError


def one_paragraph(stderr: str) -> str:
    """The error an entry point printed; asserts it is the whole of stderr's last paragraph."""
    assert "Traceback" not in stderr and "weights_only" not in stderr
    message = stderr.strip().split("\n\n")[-1]
    assert message.startswith("Error: ") and "\n" not in message
    return message


@pytest.mark.parametrize(
    "override, message",
    [
        ("task.module.optimizer.lr=nan", r"^task.module.optimizer.lr=nan: the learning rate must be a positive finite number, e.g. task.module.optimizer.lr=0.002\.$"),
        ("task.module.optimizer.lr=-1", r"^task.module.optimizer.lr=-1: the learning rate must be a positive finite number"),
        ("task.module.dropout=1.5", r"^task.module.dropout=1.5: must be a number in \[0, 1\)"),
        ("task.module.embedding_dim=0", r"^task.module.embedding_dim=0: must be a positive integer \(the size of a character's embedding"),
        ("model.hidden_size=-5", r"^model.hidden_size=-5: Recurrent: hidden_size must be a positive integer, got -5\."),
        ("+task.module.embedding=3", r"^task.module.embedding: CharLMModule takes no such argument; it takes \['vocab', 'model', 'embedding_dim'"),
        ("+task.data.shuffle=true", r"^task.data.shuffle: CharLMDataModule takes no such argument"),
    ],
    ids=["lr-nan", "lr-negative", "dropout", "embedding0", "hidden-negative", "unknown-module-key", "unknown-data-key"],
)
def test_bad_module_settings_name_their_key(cfg_factory, override: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        train(cfg_factory(override))
    assert "model.*" not in str(info.value) or override.startswith("model.")  # the key the user typed, not another


@pytest.mark.slow
def test_bad_learning_rate_on_the_command_line(tmp_path: Path, tiny_corpus: Path) -> None:
    done = run_script("train.py", f"task.data.path={tiny_corpus}", *TINY, "task.module.optimizer.lr=nan", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert one_paragraph(done.stderr).startswith("Error: task.module.optimizer.lr=nan: the learning rate must be")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_trainer_without_a_gpu(cfg_factory) -> None:
    with pytest.raises(UserError, match=r"trainer.accelerator=gpu \(trainer=gpu\): no GPU was found .* Train on the CPU with trainer=cpu"):
        train(cfg_factory("trainer=gpu"))


# ---- checkpoints ------------------------------------------------------------------------------


@pytest.fixture
def corrupt(tmp_path: Path, tiny_run: tuple[Path, dict]) -> dict[str, Path]:
    """Three broken checkpoints: garbage, a truncated real one, and a pickle that would run code."""
    real = (tiny_run[0] / "checkpoints" / "last.ckpt").read_bytes()
    files = {"garbage": b"not a checkpoint at all", "truncated": real[: len(real) // 2]}
    for name, data in files.items():
        (tmp_path / f"{name}.ckpt").write_bytes(data)

    class Code:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"state_dict": {}, "x": Code()}, tmp_path / "code.ckpt")
    return {name: tmp_path / f"{name}.ckpt" for name in [*files, "code"]}


@pytest.mark.slow
def test_a_corrupt_checkpoint_never_advises_weights_only_false(cfg_factory, corrupt: dict[str, Path], tmp_path: Path) -> None:
    for name, path in corrupt.items():
        calls = {
            "train": lambda: train(cfg_factory(f"ckpt_path={path}")),
            "eval": lambda: evaluate(cfg_factory(f"ckpt_path={path}", config_name="eval", tiny=False)),
            "predict": lambda: predict(compose_cfg(tmp_path, [f"ckpt_path={path}", "input=a"], "predict")),
            "sample": lambda: sample(OmegaConf.create({"ckpt_path": str(path), "prime": "a", "length": 1, "temperature": 1.0})),
        }
        for entry, call in calls.items():
            with pytest.raises(UserError) as info:
                call()
            text = str(info.value)
            assert text.startswith(f"ckpt_path={path} is not a checkpoint rnnlab can read ("), (name, entry, text)
            assert "weights_only" not in text and "Re-running" not in text and "take another checkpoint" in text, (name, entry, text)


@pytest.mark.slow
def test_a_corrupt_checkpoint_on_the_command_line(corrupt: dict[str, Path]) -> None:
    done = run_script("predict.py", f"ckpt_path={corrupt['code']}", "input=a")
    assert done.returncode == 2 and "this must never run" not in done.stdout
    assert one_paragraph(done.stderr).startswith(f"Error: ckpt_path={corrupt['code']} is not a checkpoint rnnlab can read (UnpicklingError:")


def test_resuming_with_another_model_size_says_what_it_was_trained_with(cfg_factory, tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    # A run directory as train.py leaves it: the checkpoint and Hydra's record of the overrides.
    run_dir = tmp_path / "old_run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    shutil.copy(tiny_run[0] / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "last.ckpt")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- task.data.path=x.txt\n- model.hidden_size=16\n- model.num_layers=1\n- trainer.max_epochs=2\n")
    with pytest.raises(UserError) as info:
        train(cfg_factory(f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "model.hidden_size=64"))
    assert str(info.value) == (
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'} was trained with model.hidden_size=16, but this run has "
        f"model.hidden_size=64: its weights do not fit this run's model. To resume it, give the model.* and task.module.* "
        f"overrides of the run that wrote it (or drop ckpt_path to train a new model). {run_dir / '.hydra' / 'overrides.yaml'} "
        f"lists that run's: task.data.path=x.txt model.hidden_size=16 model.num_layers=1"
    )
    with pytest.raises(UserError, match=r"trained with model.cell=lstm, task.module.embedding_dim=8, but this run has model.cell=gru, task.module.embedding_dim=4"):
        train(cfg_factory(f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "model=gru", "model.hidden_size=16", "model.num_layers=1", "task.module.embedding_dim=4"))


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_resuming_a_finished_run_elsewhere_keeps_its_best_score(cfg_factory, tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, before = tiny_run
    # The run trained 2 epochs: resuming it with the same budget into a new directory trains nothing.
    metrics = train(cfg_factory(f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2", "logger=[]"))
    assert metrics["step"] == before["step"]
    for key in ("val/loss", "val/loss_last", "val/bpc", "test/loss"):
        assert metrics[key] == pytest.approx(before[key], rel=1e-6), key
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["val/loss"] == pytest.approx(before["val/loss"], rel=1e-6)


# ---- missing values, and the one exit-2 wrapper -------------------------------------------------


def test_eval_sample_predict_without_a_checkpoint(cfg_factory, tmp_path: Path) -> None:
    for work, cfg in [
        (evaluate, cfg_factory(config_name="eval", tiny=False)),
        (predict, compose_cfg(tmp_path, ["input=a"], "predict")),
        (sample, compose_cfg(tmp_path, [], "sample")),
    ]:
        with pytest.raises(UserError, match=r"^ckpt_path is missing: pass it on the command line, e.g. `python (eval|predict|sample).py ckpt_path="):
            work(cfg)


@pytest.mark.slow
def test_eval_without_a_checkpoint_on_the_command_line(tmp_path: Path) -> None:
    done = run_script("eval.py", f"paths.log_dir={tmp_path}")
    assert done.returncode == 2
    assert one_paragraph(done.stderr).startswith("Error: ckpt_path is missing: pass it on the command line")
    assert list(tmp_path.iterdir()) == []  # the eval run's directory is gone, and the empty folders above it


def test_run_turns_user_errors_and_missing_values_into_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def bad(cfg):
        raise UserError("option x=1: use x=2.")

    cfg = OmegaConf.create({"needed": "???"})
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    for work, message in [(bad, "Error: option x=1: use x=2."), (lambda c: c.needed, "Error: needed is missing: give it on the command line (needed=...).")]:
        with pytest.raises(SystemExit) as info:
            run(work, cfg, run_dir=tmp_path / "run")
        assert info.value.code == 2 and capsys.readouterr().err.strip() == message
        assert not (tmp_path / "run").exists()  # nothing but Hydra's files in it: removed
    assert run(lambda c: 7, cfg) == 7
    with pytest.raises(KeyError):  # anything else is a bug: its traceback is what helps
        run(lambda c: {}["x"], cfg)
