"""The task contract (rnnlab.tasks.contract): charlm meets it, the registry finds tasks by name, the
entry layer names no task, and a task module trains in plain Python with no Hydra loaded."""

from __future__ import annotations

import ast
import math
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, ROOT
from rnnlab.entry import build_callbacks
from rnnlab.tasks import TASKS, get_task, load_module
from rnnlab.tasks.charlm import CharLMDataModule, CharLMModule
from rnnlab.tasks.contract import Task, TaskDataModule, TaskModule
from rnnlab.utils.errors import UserError

MODEL = {"layer": "rnnlab", "cell": "gru", "hidden_size": 8, "num_layers": 1}


def test_charlm_meets_the_protocols(tiny_corpus: Path) -> None:
    dm = CharLMDataModule(path=str(tiny_corpus), batch_size=4, bptt=16)
    dm.setup()
    module = CharLMModule(model=MODEL, embedding_dim=4, **dm.model_kwargs())
    assert isinstance(dm, TaskDataModule) and isinstance(module, TaskModule)
    assert not isinstance(torch.nn.Linear(2, 2), TaskModule)  # the check can fail
    assert CharLMModule.monitor == ("val/loss", "min") and CharLMModule.monitor[0] == f"val/{CharLMModule.metrics[0]}"


def test_registry_finds_tasks_by_the_name_their_config_gives() -> None:
    assert get_task("charlm") == Task("charlm", CharLMDataModule, CharLMModule)
    names = {OmegaConf.load(p).name for p in (CONFIG_DIR / "task").glob("*.yaml")}
    assert names == set(TASKS)  # every task config has a registered task, and the other way round
    for name in TASKS:
        assert get_task(name).module.name == name
    with pytest.raises(UserError, match=r"task.name='nope' is not a registered task; the known ones are \['charlm', 'memory', 'sentiment', 'seq2seq'\]"):
        get_task("nope")


def test_data_sizes_go_in_and_come_back_out(tiny_corpus: Path) -> None:
    dm = CharLMDataModule(path=str(tiny_corpus), batch_size=4, bptt=16)
    dm.setup()
    module = CharLMModule(model=MODEL, **dm.model_kwargs())
    assert module.datamodule_kwargs() == dm.model_kwargs() == {"vocab": sorted(set(tiny_corpus.read_text()))}
    # A data module built with what the module gives back encodes text exactly as the first one.
    again = CharLMDataModule(path=str(tiny_corpus), batch_size=4, bptt=16, **module.datamodule_kwargs())
    again.setup()
    assert all(torch.equal(again.splits[s], dm.splits[s]) for s in ("train", "val", "test"))


def test_the_way_back_from_a_checkpoint(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = tiny_run
    ckpt = out / "checkpoints" / "best.ckpt"
    module = load_module(ckpt)  # the checkpoint names its task: nothing else is needed
    assert type(module) is CharLMModule and not module.training
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    with pytest.raises(UserError, match=r"holds a charlm model, but the config is for task sentiment: add task=charlm"):
        load_module(ckpt, expected="sentiment")


def test_checkpoint_monitor_comes_from_the_task() -> None:
    group = OmegaConf.load(CONFIG_DIR / "callbacks" / "default.yaml")
    group.model_checkpoint.dirpath = "x"
    group.throughput = group.step_seed = group.step_checkpoint = None  # only the best-checkpoint callback matters here
    for monitor in [("val/loss", "min"), ("val/acc", "max")]:  # charlm's, and a classifier's
        (ckpt,) = [cb for cb in build_callbacks(group, monitor) if isinstance(cb, ModelCheckpoint)]
        assert (ckpt.monitor, ckpt.mode) == monitor
    group.model_checkpoint.monitor, group.model_checkpoint.mode = "val/bpc", "max"  # set by hand: kept
    (ckpt,) = [cb for cb in build_callbacks(group, ("val/loss", "min")) if isinstance(cb, ModelCheckpoint)]
    assert (ckpt.monitor, ckpt.mode) == ("val/bpc", "max")
    group.model_checkpoint.mode = None
    with pytest.raises(UserError, match=r"callbacks.model_checkpoint.monitor=val/bpc: also say .*\.mode=min or max"):
        build_callbacks(group, ("val/loss", "min"))


def test_final_metrics_come_from_the_task(tiny_run: tuple[Path, dict]) -> None:
    _, metrics = tiny_run
    # The pipeline reports the monitored metric (best and last); charlm derives the rest from it.
    assert metrics["val/bpc"] == metrics["val/loss"] / math.log(2) and metrics["val/ppl"] == math.exp(metrics["val/loss"])
    assert metrics["val/loss"] <= metrics["val/loss_last"]


ENTRY_LAYER = ["src/rnnlab/train.py", "src/rnnlab/evaluate.py", "src/rnnlab/predict.py", "src/rnnlab/entry.py"]


@pytest.mark.parametrize("path", ENTRY_LAYER)
def test_the_entry_layer_names_no_task(path: str) -> None:
    """No name, attribute or string in the code (docstrings and comments aside) is task-specific."""
    tree = ast.parse((ROOT / path).read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    specific = [w for w in words if any(s in w.lower() for s in ("charlm", "vocab", "bpc", "ppl", "sample_length", "generate"))]
    assert specific == []


@pytest.mark.slow
def test_a_task_module_trains_without_hydra(tmp_path: Path, tiny_corpus: Path) -> None:
    """A notebook's view: plain Python, a Lightning Trainer, and neither Hydra nor OmegaConf loaded."""
    script = textwrap.dedent(f"""
        import sys
        import lightning as L
        from rnnlab.tasks.charlm import CharLMDataModule, CharLMModule

        dm = CharLMDataModule(path={str(tiny_corpus)!r}, batch_size=4, bptt=16)
        dm.setup()
        module = CharLMModule(model={{"layer": "rnnlab", "cell": "lstm", "hidden_size": 16}}, embedding_dim=8,
                              optimizer={{"name": "adamw", "lr": 0.01}}, scheduler={{"name": "warmup_cosine", "warmup_steps": 2}},
                              sample_length=0, **dm.model_kwargs())
        before = [p.detach().clone() for p in module.parameters()]
        trainer = L.Trainer(max_steps=4, val_check_interval=2, limit_val_batches=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir={str(tmp_path)!r})
        trainer.fit(module, datamodule=dm)
        assert trainer.global_step == 4 and "val/loss" in trainer.callback_metrics
        assert any(not (p == b).all() for p, b in zip(module.parameters(), before))  # it learned something
        print(module.predict_text(["KING:"], length=5, seed=0)[0][:5])
        print(sorted(m for m in ("hydra", "omegaconf") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == ["KING:", "[]"]


def test_a_sweeper_gets_the_tasks_monitored_metric(cfg_factory) -> None:
    from rnnlab.train import main

    cfg = cfg_factory("debug=fast")
    assert cfg.optimized_metric is None  # nothing task-specific in train.yaml
    value = main(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert value == metrics["val/loss"] and "train/chars_per_sec" in metrics  # charlm's monitor and unit


@pytest.mark.parametrize("debug", ["fast", "overfit"])
@pytest.mark.parametrize("task", sorted(TASKS))
def test_generic_configs_set_only_what_every_task_takes(task: str, debug: str, tmp_path: Path) -> None:
    """debug/*, model/* and experiments meant for any task may set task.module keys only if the task's
    module takes them (a charlm-only key in debug=fast stops task=sentiment before it starts)."""
    import inspect

    from conftest import compose_cfg

    cfg = compose_cfg(tmp_path / "run", [f"task={task}", f"debug={debug}"], "train")
    module = get_task(task).module
    accepted = set(inspect.signature(module.__init__).parameters) - {"self"}
    assert set(cfg.task.module) <= accepted, f"debug={debug} sets {sorted(set(cfg.task.module) - accepted)} on {module.__name__}"
    OmegaConf.resolve(cfg.task)  # every interpolation resolves (model.dropout etc.)
