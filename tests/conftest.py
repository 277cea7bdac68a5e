"""Shared fixtures: tiny generated corpora, composed Hydra configs, one tiny trained run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
# Where CI and developers keep the real data offline; tests that need it skip when it is absent.
SHARED_DATA = Path(os.environ.get("RNNLAB_DATA_DIR") or ROOT.parent / "shared" / "data")

WORDS = "the king queen of to be or not that is question whether nobler mind suffer and my lord sir good night".split()

# Small enough that a run takes seconds: ~40 windows of 4 streams × 16 characters per epoch.
TINY = [
    "model.hidden_size=16",
    "model.num_layers=1",
    "task.module.embedding_dim=8",
    "task.module.sample_length=20",
    "task.data.batch_size=4",
    "task.data.bptt=16",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=5",
    "callbacks.progress_bar.refresh_rate=0",
    "callbacks.model_summary=null",
]


def make_corpus(path: Path, n_chars: int = 3000, seed: int = 0) -> Path:
    """A deterministic play-like text of about `n_chars` characters."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_chars:
        speaker = rng.choice(["KING", "QUEEN", "LORD"])
        line = f"{speaker}:\n" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + ".\n\n"
        lines.append(line)
        size += len(line)
    path.write_text("".join(lines)[:n_chars], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


def compose_cfg(output_dir: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """The config `python <config_name>.py <overrides>` would run with, writing to `output_dir`."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        if "paths" in cfg:
            cfg.paths.output_dir = str(output_dir)  # Hydra sets this at run time; compose does not run
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path: Path, tiny_corpus: Path) -> Callable[..., DictConfig]:
    """cfg_factory(*overrides, config_name="train"): a tiny charlm config on the tiny corpus."""

    def make(*overrides: str, config_name: str = "train", tiny: bool = True) -> DictConfig:
        base = [f"task.data.path={tiny_corpus}", *TINY] if tiny else []
        return compose_cfg(tmp_path / "run", [*base, *overrides], config_name)

    return make


@pytest.fixture
def cfg_train(cfg_factory: Callable[..., DictConfig]) -> DictConfig:
    """The composed default training config with tiny sizes (the composed-config fixture)."""
    return cfg_factory()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_corpus: Path) -> tuple[Path, dict[str, float]]:
    """One tiny model trained for 2 epochs with the default loggers and checkpoints: (run dir, metrics)."""
    from rnnlab.train import train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_cfg(out, [f"task.data.path={tiny_corpus}", *TINY, "trainer.max_epochs=2", "logger=[tensorboard,csv]"])
    return out, train(cfg)


def run_script(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root, as a user would; captures output."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def pytest_configure(config: pytest.Config) -> None:
    # Lightning 2.6 calls a pytree API that torch deprecates (the entry points silence it too).
    config.addinivalue_line("filterwarnings", r"ignore:.*isinstance\(treespec, LeafSpec\):DeprecationWarning")
    config.addinivalue_line("filterwarnings", r"ignore:.*isinstance\(treespec, LeafSpec\)")


def run_main(cfg):
    """`train.py` in-process: rnnlab.train.main inside the entry layer's exit-2 wrapper."""
    from rnnlab.entry import run
    from rnnlab.train import main

    return run(main, cfg, run_dir=cfg.paths.output_dir)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    tiny tensors gain nothing from threads, and on a busy machine each op's thread hand-off costs ms."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_threads():
    """train.py sets torch's thread count for its process (`threads: auto`); tests share one process."""
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
