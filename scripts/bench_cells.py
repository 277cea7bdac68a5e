"""Custom cells vs torch.nn, side by side in one process.

    .venv/bin/python scripts/bench_cells.py                 # CPU, both sizes, lstm gru rnn
    .venv/bin/python scripts/bench_cells.py --device cuda   # custom vs cuDNN
    .venv/bin/python scripts/bench_cells.py --sizes small --cells lstm --rounds 5

For each case it alternates torch.nn and rnnlab (same weights, same input) for several rounds
after a warm-up, and prints the median time of each in ms and the ratio rnnlab / torch.nn
(below 1: rnnlab is faster). "train" is forward + backward of output.sum(); "forward" is
forward only under no_grad. Timings on a shared machine drift: read ratios, not absolute ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnlab.nn import Recurrent

SIZES = {  # batch, time, input, hidden, layers
    "charlm": (64, 100, 128, 512, 2),
    "small": (32, 50, 128, 128, 1),
}
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1000


def bench_case(cell: str, size: str, mode: str, rounds: int, device: torch.device) -> tuple[float, float]:
    B, T, I, H, L = SIZES[size]
    torch.manual_seed(0)
    ref = TORCH[cell](I, H, L, batch_first=True).to(device)
    ours = Recurrent.from_torch(ref)
    x = torch.randn(B, T, I, device=device, requires_grad=(mode == "train"))

    def run(module):
        def go():
            if mode == "train":
                out, _ = module(x)
                out.sum().backward()
            else:
                with torch.no_grad():
                    module(x)
        return go

    fns = {"torch": run(ref), "rnnlab": run(ours)}
    for fn in fns.values():  # warm-up: allocator, oneDNN primitive cache, cuDNN plans
        fn(), fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):  # alternate so drift hits both alike
        for k, fn in fns.items():
            times[k].append(timed(fn, device))
    return statistics.median(times["torch"]), statistics.median(times["rnnlab"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"], choices=list(TORCH))
    parser.add_argument("--modes", nargs="+", default=["train", "forward"], choices=["train", "forward"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; median of {args.rounds} alternating rounds")
    print(f"| size | cell | mode | torch.nn ms | rnnlab ms | rnnlab / torch.nn |")
    print(f"|---|---|---|---:|---:|---:|")
    for size in args.sizes:
        for cell in args.cells:
            for mode in args.modes:
                t_ref, t_ours = bench_case(cell, size, mode, args.rounds, device)
                print(f"| {size} | {cell} | {mode} | {t_ref:.1f} | {t_ours:.1f} | {t_ours / t_ref:.2f} |", flush=True)


if __name__ == "__main__":
    main()
