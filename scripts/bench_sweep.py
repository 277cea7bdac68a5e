"""A 4-job sweep of a tiny char-LM, run sequentially and then in parallel (hydra/launcher=joblib),
side by side in one run of this script; prints each one's wall time and their ratio.

    .venv/bin/python scripts/bench_sweep.py                  # n_jobs=2, 4 jobs
    .venv/bin/python scripts/bench_sweep.py --n-jobs 2 --jobs 4 --steps 4000 --out /tmp/bench_sweep

The jobs are `model=rnn,gru,lstm,torch_lstm` (4 jobs) on tiny Shakespeare (RNNLAB_DATA_DIR), hidden
64, batch 16 × bptt 64, a fixed number of steps each. In the parallel sweep each job gets its share
of the cores (threads=auto: torch threads = cores / n_jobs). The goal: parallel ≤ 0.6 × sequential
on 2 cores. Both sweeps must succeed; the script exits 1 if either fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["rnn", "gru", "lstm", "torch_lstm", "layernorm_lstm", "torch_gru", "torch_rnn"]


def sweep(out: Path, steps: int, jobs: int, launcher: list[str]) -> float:
    """Wall seconds of one `train.py -m` sweep (process start to exit)."""
    args = [
        sys.executable, "train.py", "-m", f"model={','.join(MODELS[:jobs])}", "model.hidden_size=64", "model.num_layers=1",
        "task.data.batch_size=16", "task.data.bptt=64", f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=20", "test=false", "task.module.sample_length=0", "callbacks.progress_bar.refresh_rate=0",
        "callbacks.model_summary=null", "logger=[]", f"hydra.sweep.dir={out}", *launcher,
    ]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        sys.exit(f"the sweep into {out} failed (exit {done.returncode})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=4, choices=range(2, len(MODELS) + 1))
    parser.add_argument("--steps", type=int, default=4000, help="training steps of each job (~30 s each here)")
    parser.add_argument("--out", type=Path, default=None, help="where the two sweeps write (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    sequential = sweep(out / "sequential", args.steps, args.jobs, [])
    parallel = sweep(out / "parallel", args.steps, args.jobs, ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"])
    print(f"{args.jobs} jobs x {args.steps} steps: sequential {sequential:.1f} s, joblib n_jobs={args.n_jobs} {parallel:.1f} s, "
          f"ratio {parallel / sequential:.2f} (goal <= 0.60)")
    print(f"summaries: {out / 'sequential' / 'summary.md'}, {out / 'parallel' / 'summary.md'}")


if __name__ == "__main__":
    main()
