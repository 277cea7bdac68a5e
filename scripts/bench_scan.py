"""Parallel-scan cells (minGRU, minLSTM) beside the step-by-step LSTM and GRU as T grows, in one run.

    .venv/bin/python scripts/bench_scan.py                          # T = 100, 1000, 4000; batch 16, 128 -> 256
    .venv/bin/python scripts/bench_scan.py --lengths 100 1000 --batch 32 --hidden 512 --device cuda

For each T it times one training step (forward + backward of out.sum(), median of alternating
rounds after a warm-up) of one layer of each cell, and, on the CPU, the peak memory that step adds
(each in a fresh process, as scripts/bench_cells.py --memory). The last columns are the ratio to the
LSTM measured in the same run. minGRU / minLSTM run their log-space scan (rnnlab/nn/scan.py);
`--step` adds their step loop (scan=False) for contrast.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from bench_cells import MEMORY_ENV, step, step_peak_mib  # scripts/: the same step and memory probe
from rnnlab.nn import Recurrent


def build(cell: str, T: int, args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    name, _, mode = cell.partition(":")
    extra = {"scan": False} if mode == "step" else {}
    layer = Recurrent(name, args.input, args.hidden, **extra).to(device)
    return layer, torch.randn(args.batch, T, args.input, device=device, requires_grad=True)


def timed(layer: torch.nn.Module, x: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(layer, x, True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def memory_child(cell: str, T: int, args: argparse.Namespace) -> None:
    print(json.dumps({"peak_mib": step_peak_mib(*build(cell, T, args, torch.device("cpu")))}))


def peak_mib(cell: str, T: int, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--memory-child", cell, str(T), "--batch", str(args.batch), "--input", str(args.input),
           "--hidden", str(args.hidden)]
    out = subprocess.run(cmd, env=MEMORY_ENV, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", nargs="+", type=int, default=[100, 1000, 4000])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "mingru", "minlstm"])
    parser.add_argument("--step", action="store_true", help="also minGRU / minLSTM as a step loop (mingru:step)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child[0], int(args.memory_child[1]), args)
    cells = args.cells + ([f"{c}:step" for c in ("mingru", "minlstm") if c in args.cells] if args.step else [])
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    print(f"torch {torch.__version__}, {device} ({torch.get_num_threads()} threads), batch {args.batch}, input {args.input}, "
          f"hidden {args.hidden}, one layer; median of {args.rounds} alternating rounds")
    print("| T | cell | train step ms | peak MiB | time / lstm | memory / lstm |" if cpu else "| T | cell | train step ms | time / lstm |")
    print("|---:|---|---:|---:|---:|---:|" if cpu else "|---:|---|---:|---:|")
    for T in args.lengths:
        built = {c: build(c, T, args, device) for c in cells}
        for layer, x in built.values():  # warm-up
            step(layer, x, True)
        times: dict[str, list[float]] = {c: [] for c in cells}
        for _ in range(args.rounds):  # alternate, so drift hits every cell alike
            for c, (layer, x) in built.items():
                times[c].append(timed(layer, x, device))
        ms = {c: statistics.median(t) for c, t in times.items()}
        mem = {c: peak_mib(c, T, args) for c in cells} if cpu else {}
        ref = "lstm" if "lstm" in cells else cells[0]
        for c in cells:
            if cpu:
                print(f"| {T} | {c} | {ms[c]:.1f} | {mem[c]:.0f} | {ms[c] / ms[ref]:.2f} | {mem[c] / max(mem[ref], 1e-9):.2f} |", flush=True)
            else:
                print(f"| {T} | {c} | {ms[c]:.1f} | {ms[c] / ms[ref]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
