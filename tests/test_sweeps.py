"""Sweeps beyond the basic launcher (rnnlab[sweep]): jobs in parallel (joblib), Optuna searches that
resume, and the submitit launcher's local executor (SLURM's stand-in here)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from conftest import TINY
from test_resume import data, train_py  # noqa: F401  (data: the fixture)

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
optuna = pytest.importorskip("optuna")

FAST = [*TINY, "task.module.sample_length=0", "logger=[]"]


def rows(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_joblib_runs_jobs_side_by_side_and_a_failure_leaves_the_others(tmp_path: Path, data: dict[str, str]) -> None:
    sweep = tmp_path / "sweep"
    done = train_py("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", data["charlm"], *FAST, "model.hidden_size=16,-3,8",
                    f"hydra.sweep.dir={sweep}")
    assert done.returncode == 1  # a job failed: the sweep says so
    got = rows(sweep)
    assert [r["status"] for r in got] == ["ok", "failed", "ok"]
    assert "model.hidden_size=-3" in got[1]["error"] and math.isfinite(float(got[2]["val/loss"]))
    assert all((sweep / j / "metrics.json").is_file() for j in ("0", "2")) and not (sweep / "1" / "metrics.json").exists()
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr  # the launcher that ran them


@pytest.mark.slow
def test_optuna_search_resumes_with_the_trials_it_lacks(tmp_path: Path, data: dict[str, str]) -> None:
    db = tmp_path / "db" / "study.db"
    search = ["hparams_search=charlm_optuna", data["charlm"], *FAST, "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweeper.storage=sqlite:///{db}"]
    first = train_py(*search, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr[-3000:]
    again = train_py(*search, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'b'}")  # "stopped" after 2 of 3
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has 2 finished trials of n_trials=3: running 1 more" in again.stdout + again.stderr
    study = optuna.load_study(study_name="charlm", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len(rows(tmp_path / "b")) == 1
    # Each trial's value is the job's best val/loss (the task's monitor), and the study minimised it.
    values = sorted(t.value for t in trials)
    jobs = [float(r["val/loss"]) for sweep in ("a", "b") for r in rows(tmp_path / sweep)]
    assert values == pytest.approx(sorted(jobs), rel=1e-6) and study.best_value == min(values)
    best = (tmp_path / "b" / "optimization_results.yaml").read_text()
    assert "best_value" in best and {"model", "task.module.dropout", "task.module.optimizer.lr"} <= set(study.best_params)


@pytest.mark.slow
def test_optuna_going_the_wrong_way_is_refused(tmp_path: Path, data: dict[str, str]) -> None:
    done = train_py("hparams_search=charlm_optuna", data["charlm"], *FAST, "hydra.sweeper.direction=maximize", "hydra.sweeper.n_trials=1",
                    f"hydra.sweeper.storage=sqlite:///{tmp_path / 's.db'}", f"hydra.sweep.dir={tmp_path / 'a'}")
    assert done.returncode != 0
    status = json.loads((tmp_path / "a" / "0" / "status.json").read_text())
    assert status["error"].startswith("hydra.sweeper.direction=maximize, but the metric it optimises, val/loss, is better when lower")


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path: Path, data: dict[str, str]) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    done = train_py("-m", "hydra/launcher=submitit_local", data["charlm"], *FAST, "model.hidden_size=16,8", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["status"] for r in rows(sweep)] == ["ok", "ok"]
    assert list((sweep / ".submitit").glob("*/*_log.out"))  # submitit ran them as its own jobs


@pytest.mark.parametrize("task", ["charlm", "sentiment", "seq2seq"])
def test_each_tasks_search_goes_the_way_of_its_monitor(tmp_path: Path, task: str) -> None:
    from conftest import compose_cfg
    from rnnlab.tasks import get_task

    cfg = compose_cfg(tmp_path, [f"hparams_search={task}_optuna"])
    assert cfg.task.name == task and cfg.hydra.sweeper.study_name == task
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.rnnlab_sweepers.optuna.ResumableOptunaSweeper"
    monitor = (cfg.task.module.monitor, "min" if cfg.task.module.monitor == "val/loss" else "max") if task == "seq2seq" else get_task(task).module.monitor
    assert cfg.optimized_metric == monitor[0]
    assert cfg.hydra.sweeper.direction == ("minimize" if monitor[1] == "min" else "maximize")
    assert {"task.module.optimizer.lr", "model.hidden_size", "task.module.dropout", "model"} <= set(cfg.hydra.sweeper.params)
    assert cfg.hydra.sweeper.storage == f"sqlite:///{cfg.paths.log_dir}/optuna/{task}.db"
