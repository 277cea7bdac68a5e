"""DDP on the CPU (trainer=ddp_cpu, 2 processes, gloo): the ranks end with the same weights, each
trained on its own share of every batch, in one run directory that only rank 0 writes to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_resume import CHARLM, SENTIMENT, data, train_py  # noqa: F401  (data: the fixture)

PROBE = ["+callbacks.probe._target_=probes.WeightsProbe"]


def probe(out: Path, ranks: int) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


def no_dropout(overrides: list[str]) -> list[str]:
    # Dropout draws differ between ranks (StepSeed seeds each its own); without it, two ranks on half
    # a batch each take the step one process takes on the whole batch.
    return [o for o in overrides if "dropout" not in o]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["charlm", "sentiment"])
def test_ddp_cpu_ranks_agree_and_only_rank_zero_writes(tmp_path: Path, data: dict[str, str], task: str) -> None:
    base = [data[task], *no_dropout(CHARLM if task == "charlm" else SENTIMENT), "trainer.max_epochs=1", "seed=3", *PROBE]
    runs = tmp_path / "runs"
    ddp = train_py("trainer=ddp_cpu", *base, f"hydra.run.dir={runs / 'ddp'}", f"+callbacks.probe.out={tmp_path / 'ddp'}")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = train_py(*base, f"hydra.run.dir={tmp_path / 'single'}", f"+callbacks.probe.out={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    r0, r1 = probe(tmp_path / "ddp", 2)
    (single,) = probe(tmp_path / "one", 1)

    assert r0["world"] == r1["world"] == 2 and r0["weights"] == r1["weights"]  # identical final weights
    # Each step, the two ranks' rows are the single process's batch, split: no example trained twice.
    assert len(r0["batches"]) == len(r1["batches"]) == len(single["batches"])
    for a, b, whole in zip(r0["batches"], r1["batches"], single["batches"]):
        assert not set(map(tuple, a)) & set(map(tuple, b))
        assert sorted(map(tuple, a + b)) == sorted(map(tuple, whole))
    # The validation loss over both ranks' shares equals one process's (same data, same model).
    assert r0["val_loss"] == r1["val_loss"] == pytest.approx(single["val_loss"], rel=1e-4)

    assert [p.name for p in runs.iterdir()] == ["ddp"]  # exactly one run directory
    run = runs / "ddp"
    assert not list(run.glob("*ddp_process*")) and [p.name for p in run.glob("*.log")] == ["train.log"]
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and len({p.name.split(".")[4] for p in events}) == 1  # one writer process (the pid in the name)
    assert (run / "metrics.json").is_file() and sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    metrics = json.loads((run / "metrics.json").read_text())
    monitor = "val/loss" if task == "charlm" else "val/acc"
    assert metrics[f"{monitor}_last"] == pytest.approx(json.loads((tmp_path / "single" / "metrics.json").read_text())[f"{monitor}_last"], rel=1e-4, abs=1e-3)


@pytest.mark.slow
def test_ddp_in_a_basic_sweep_is_refused(tmp_path: Path, data: dict[str, str]) -> None:
    done = train_py("-m", "trainer=ddp_cpu", data["charlm"], *CHARLM, "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 1  # the sweep summary: both jobs failed
    status = json.loads((tmp_path / "sweep" / "0" / "status.json").read_text())
    assert status["error"].startswith("trainer.strategy=ddp with 2 devices inside a -m sweep: Lightning would start")
