"""What a user meets around the entry points: where runs go, each log line once, failed runs and
sweeps, the Trainer options every config lists, and the ./rnnlab command."""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, read_write

from conftest import ROOT, SHARED_DATA, TINY, run_main, run_script
from rnnlab.train import main, train
from rnnlab.utils.sweep import SweepSummary, remove_unused_run_dir

# Trainer arguments people reach for: configs/trainer/cpu.yaml lists them with Lightning's defaults.
TRAINER_KEYS = ["limit_train_batches", "limit_val_batches", "limit_test_batches", "accumulate_grad_batches", "precision", "check_val_every_n_epoch"]


def hydra_files(run_dir: Path) -> Path:
    """What Hydra writes into a run directory before the job starts."""
    (run_dir / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / name).write_text("{}\n")
    (run_dir / "train.log").write_text("")
    return run_dir


# ---- configs: run directories, the Trainer, debug=fast ------------------------------------------


def test_train_and_eval_runs_have_their_own_folders(cfg_factory) -> None:
    # Nothing passed for hydra.run.dir: the folder comes from the entry point's config.
    assert cfg_factory(tiny=False).hydra.run.dir.startswith("outputs/charlm/runs/")
    assert cfg_factory("ckpt_path=x.ckpt", config_name="eval", tiny=False).hydra.run.dir.startswith("outputs/charlm/eval/")


def test_trainer_config_lists_lightning_defaults(cfg_factory) -> None:
    import lightning as L

    arguments = inspect.signature(L.Trainer.__init__).parameters
    cpu, gpu = cfg_factory(tiny=False).trainer, cfg_factory("trainer=gpu", tiny=False).trainer
    assert {key: cpu[key] for key in TRAINER_KEYS} == {key: arguments[key].default for key in TRAINER_KEYS}
    assert set(cpu) - {"_target_"} <= set(arguments)  # every key is a Trainer argument
    assert cpu.accelerator == "cpu" and gpu.accelerator == "gpu"
    assert {key for key in cpu if cpu[key] != gpu[key]} == {"accelerator"}  # one set of defaults


def test_trainer_limits_need_no_plus(cfg_factory) -> None:
    # 6 batches, one optimizer step per 3: 2 steps (a `+` would be needed if the keys were missing).
    cfg = cfg_factory("trainer.limit_train_batches=6", "trainer.accumulate_grad_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=1", "trainer.check_val_every_n_epoch=1", "logger=[]")
    assert train(cfg)["step"] == 2


def test_debug_fast_writes_no_checkpoints_or_events(cfg_factory, tmp_path: Path) -> None:
    metrics = train(cfg_factory("debug=fast", "logger=[tensorboard,csv]"))
    run = tmp_path / "run"
    assert metrics["step"] == 5 and math.isfinite(metrics["test/loss"])
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]


@pytest.mark.skipif(not (SHARED_DATA / "tinyshakespeare" / "input.txt").is_file(), reason="no local copy of tiny Shakespeare")
def test_shakespeare_recipe_epoch_length(cfg_factory) -> None:
    # configs/experiment/charlm_shakespeare.yaml's comment: 245 windows an epoch, 3185 steps in 13.
    from rnnlab.entry import datamodule_kwargs
    from rnnlab.tasks import get_task

    cfg = cfg_factory("experiment=charlm_shakespeare", f"paths.data_dir={SHARED_DATA}", tiny=False)
    datamodule = get_task(cfg.task.name).datamodule(**datamodule_kwargs(cfg))
    datamodule.setup("fit")
    assert len(datamodule.train_dataloader()) == 245 and 245 * cfg.trainer.max_epochs == 3185


# ---- the console ------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_log_line_shows_once(tmp_path: Path, tiny_corpus: Path) -> None:
    tiny = [o for o in TINY if o != "callbacks.model_summary=null"]  # the summary printed twice too
    done = run_script("train.py", f"task.data.path={tiny_corpus}", *tiny, "debug=fast", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    assert not [line for line in console.splitlines() if line.startswith("INFO:")]  # Lightning's own handler
    assert console.count("Seed set to 1234") == 1 and console.count("GPU available") == 1
    assert console.count("| Name ") == 1 and console.count("Total params") == 1
    log = (tmp_path / "run" / "train.log").read_text()  # the run's log still gets Lightning's lines
    assert log.count("GPU available") == 1 and log.count("Total params") == 1


# ---- failed runs and sweeps -------------------------------------------------------------------


def test_failed_single_run_removes_its_empty_directory(cfg_factory, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = hydra_files(tmp_path / "run")
    with pytest.raises(SystemExit) as info:
        run_main(cfg_factory("task.data.bptt=0"))
    assert info.value.code == 2 and "task.data.bptt=0" in capsys.readouterr().err
    assert not run.exists() and tmp_path.is_dir()


def test_remove_unused_run_dir_also_removes_the_empty_folders_above_it(tmp_path: Path) -> None:
    assert remove_unused_run_dir(hydra_files(tmp_path / "outputs" / "charlm" / "runs" / "2026-01-01_00-00-00"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["outputs"]
    hydra_files(tmp_path / "outputs" / "charlm" / "runs" / "kept" / "checkpoints")
    assert remove_unused_run_dir(hydra_files(tmp_path / "outputs" / "charlm" / "runs" / "failed"))
    assert (tmp_path / "outputs" / "charlm" / "runs" / "kept").is_dir()


def test_remove_unused_run_dir_keeps_anything_else(tmp_path: Path) -> None:
    assert remove_unused_run_dir(hydra_files(tmp_path / "a")) and not (tmp_path / "a").exists()
    kept = hydra_files(tmp_path / "b")
    (kept / "checkpoints").mkdir()
    (kept / "notes.txt").write_text("mine")
    assert not remove_unused_run_dir(kept) and (kept / ".hydra" / "config.yaml").is_file() and (kept / "train.log").is_file()
    assert not remove_unused_run_dir(tmp_path / "missing") and not remove_unused_run_dir(None)


def test_failed_sweep_job_records_its_error_and_returns_nan(cfg_factory, tmp_path: Path) -> None:
    cfg = cfg_factory("task.data.bptt=0")
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN  # as in a job of `train.py -m`
    HydraConfig().set_config(cfg)
    try:
        assert math.isnan(main(cfg))  # no SystemExit: the sweep goes on to its next job
    finally:
        HydraConfig.instance().cfg = None  # no later test runs "in a sweep"
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and status["error"].startswith("task.data.bptt=0: must be a positive integer")


def test_sweep_summary_lists_failed_jobs_and_exits_1(tmp_path: Path) -> None:
    for job, overrides in enumerate(["lr=0.1", "lr=nan", "lr=0.2"]):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- {overrides}\n")
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"val/loss": 1.5}))
    (tmp_path / "1" / "status.json").write_text(json.dumps({"status": "failed", "error": "ValueError: Invalid learning rate: nan\nsecond | line"}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    with pytest.raises(SystemExit) as info:
        SweepSummary().on_multirun_end(config)  # job 2 never wrote a thing: killed, say
    assert info.value.code == 1
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"], r["val/loss"]) for r in rows] == [("0", "ok", "1.5"), ("1", "failed", ""), ("2", "failed", "")]
    assert rows[1]["error"] == "ValueError: Invalid learning rate: nan\nsecond | line" and "did not finish" in rows[2]["error"]
    table = [line for line in (tmp_path / "summary.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0] == "| job | status | overrides | val/loss | error |"
    assert table[2] == "| 1 | failed | lr=nan |  | ValueError: Invalid learning rate: nan second \\| line |"
    (tmp_path / "1" / "status.json").unlink()
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({"val/loss": 1.4}))
    (tmp_path / "2" / "metrics.json").write_text(json.dumps({"val/loss": 1.6}))
    SweepSummary().on_multirun_end(config)  # all ok: returns
    with open(tmp_path / "summary.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"] * 3


@pytest.mark.slow
def test_sweep_with_failing_jobs_runs_them_all(tmp_path: Path, tiny_corpus: Path) -> None:
    sweep = tmp_path / "sweep"
    tiny = [o for o in TINY if not o.startswith("model.hidden_size=")]
    # Two bad inputs (hidden_size=-5, lr=nan: UserErrors), 4 jobs.
    done = run_script("train.py", "-m", "model.hidden_size=16,-5", "task.module.optimizer.lr=0.002,nan", f"task.data.path={tiny_corpus}", *tiny, "logger=[]", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "3 of 4 jobs failed" in done.stdout + done.stderr
    with open(sweep / "summary.csv") as f:
        rows = {" ".join(o for o in r["overrides"].split() if o.startswith(("model.hidden", "task.module.opt"))): r for r in csv.DictReader(f)}
    ok = rows["model.hidden_size=16 task.module.optimizer.lr=0.002"]
    assert ok["status"] == "ok" and ok["error"] == "" and math.isfinite(float(ok["test/loss"]))
    assert (sweep / ok["job"] / "metrics.json").is_file()
    crash = rows["model.hidden_size=16 task.module.optimizer.lr=nan"]
    assert crash["status"] == "failed" and crash["error"].startswith("task.module.optimizer.lr=nan: the learning rate must be")
    for lr in ("0.002", "nan"):
        bad = rows[f"model.hidden_size=-5 task.module.optimizer.lr={lr}"]
        assert bad["status"] == "failed" and "hidden_size must be a positive integer, got -5" in bad["error"]
        assert json.loads((sweep / bad["job"] / "status.json").read_text())["status"] == "failed"
    assert len(rows) == 4 and (sweep / "summary.md").read_text().count("| failed |") == 3


# ---- ./rnnlab ---------------------------------------------------------------------------------


def test_rnnlab_command_sets_up_once_then_runs(tmp_path: Path) -> None:
    # A copy of the scripts in a fresh folder, with a stand-in python that records its calls.
    repo, calls = tmp_path / "repo", tmp_path / "calls.txt"
    repo.mkdir()
    for name in ("rnnlab", "setup.sh", "pyproject.toml"):
        (repo / name).write_bytes((ROOT / name).read_bytes())
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$(basename "$0") [$PWD] $*" >> {calls}\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p .venv/bin && cp "$0" .venv/bin/python && cp "$0" .venv/bin/pip; fi\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    env.pop("RNNLAB_TORCH", None)

    def rnnlab(*args: str, cwd: Path = repo) -> subprocess.CompletedProcess:
        calls.write_text("")
        return subprocess.run(["bash", str(repo / "rnnlab"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    first = rnnlab("test", "-k", "x")
    assert first.returncode == 0, first.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == f"python3 [{repo}] -m venv .venv" and f"pip [{repo}] install -q -e .[dev,sweep]" in lines
    assert lines[-1] == f"python [{repo}] -m pytest -q -k x"
    second = rnnlab("test")  # set up already: nothing printed, nothing installed
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")
    assert calls.read_text().splitlines() == [f"python [{repo}] -m pytest -q"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rnnlab("train", "task=charlm", "model=lstm", cwd=elsewhere)  # overrides' paths stay relative to the caller
    assert calls.read_text().splitlines() == [f"python [{elsewhere}] {repo / 'train.py'} task=charlm model=lstm"]
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# changed\n")
    rnnlab("test")  # a changed pyproject.toml installs again
    assert any(line.startswith("pip ") for line in calls.read_text().splitlines())
    unknown = rnnlab("fit")
    assert unknown.returncode == 2 and "unknown command 'fit'" in unknown.stderr
