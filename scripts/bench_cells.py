"""Custom cells vs torch.nn, side by side in one process.

    .venv/bin/python scripts/bench_cells.py                      # CPU, all sizes, lstm gru rnn
    .venv/bin/python scripts/bench_cells.py --contend torch:2    # idle, then beside a 2-thread training
    .venv/bin/python scripts/bench_cells.py --contend spin:1     # ... beside one busy single-threaded process
    .venv/bin/python scripts/bench_cells.py --memory             # peak memory of a training step
    .venv/bin/python scripts/bench_cells.py --profile            # the LSTM forward's GEMM floor vs the rest
    .venv/bin/python scripts/bench_cells.py --gemm               # torch.mm (MKL) vs rnnlab's GEMM route (oneDNN)
    .venv/bin/python scripts/bench_cells.py --threads auto       # each size on the threads train.py picks
    .venv/bin/python scripts/bench_cells.py --device cuda        # custom vs cuDNN
    .venv/bin/python scripts/bench_cells.py --sizes small --cells lstm --rounds 5

For each case it alternates torch.nn and rnnlab (same weights, same input) for several rounds
after a warm-up, and prints the median time of each in ms and the ratio rnnlab / torch.nn
(below 1: rnnlab is faster). "train" is forward + backward of output.sum(); "forward" is
forward only under no_grad. Timings on a shared machine drift: read ratios, not absolute ms.

--contend KIND:N measures every case idle, then starts the competing load itself (spin: N busy
Python processes; torch: one torch.nn.LSTM training with N threads), measures again, and prints
each side's slowdown (contended / idle) beside the contended ratio. Sweeps run jobs side by side
and laptops run other programs: a loop that needs every core at every step collapses there.

--memory runs one training step at "charlm" size for each side in a fresh process and prints the
peak resident memory the step adds (VmHWM after the step minus VmRSS before it; large blocks
are mmapped, so freed memory leaves the count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from rnnlab.nn import Recurrent
from rnnlab.nn.kernels import native
from rnnlab.nn.threads import DEFAULT_THREADS, threads_for_model

SIZES = {  # batch, time, input, hidden, layers
    "charlm": (64, 100, 128, 512, 2),
    "small": (32, 50, 128, 128, 1),
    "tiny": (8, 32, 32, 32, 1),  # a char-LM smoke run: hidden 32, batch 8, bptt 32
}
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}

LOADS = {  # the competing process, as `python -c` code; {n} is N from --contend KIND:N
    "spin": "while True: pass",
    "torch": ("import torch\ntorch.set_num_threads({n})\nm = torch.nn.LSTM(128, 256, batch_first=True)\n"
              "x = torch.randn(32, 50, 128)\nwhile True:\n    m(x)[0].sum().backward()"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1000


def build(cell: str, size: str, device: torch.device, train: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """(torch.nn module, rnnlab module with the same weights, input (batch, time, input))."""
    B, T, I, H, L = SIZES[size]
    torch.manual_seed(0)
    ref = TORCH[cell](I, H, L, batch_first=True).to(device)
    return ref, Recurrent.from_torch(ref), torch.randn(B, T, I, device=device, requires_grad=train)


def step(module: torch.nn.Module, x: torch.Tensor, train: bool) -> None:
    if train:
        out, _ = module(x)
        out.sum().backward()
    else:
        with torch.no_grad():
            module(x)


def bench_case(cell: str, size: str, mode: str, rounds: int, device: torch.device, threads: str = "all") -> tuple[float, float]:
    """Median ms of (torch.nn, rnnlab) over `rounds` alternating rounds, both on `threads` CPU threads
    (all: torch's default; auto: rnnlab.nn.threads's choice for this size, as train.py makes it)."""
    train = mode == "train"
    ref, ours, x = build(cell, size, device, train)
    # auto: the count train.py would pick for this model and batch (rnnlab.nn.threads reads the layer).
    count = {"all": DEFAULT_THREADS, "auto": threads_for_model(ours, x.size(0))}.get(threads) or int(threads)
    torch.set_num_threads(count)
    # Small cases repeat within a round, so that a round lasts long enough to time.
    reps = max(1, round(20 / max(timed(lambda: step(ref, x, train), device), 1e-3)))
    fns = {"torch": ref, "rnnlab": ours}
    for m in fns.values():  # warm-up: allocator, oneDNN primitive cache, cuDNN plans
        for _ in range(2 * reps):
            step(m, x, train)
    times = {k: [] for k in fns}
    for _ in range(rounds):  # alternate so drift hits both alike
        for k, m in fns.items():
            times[k].append(timed(lambda: [step(m, x, train) for _ in range(reps)], device) / reps)
    return statistics.median(times["torch"]), statistics.median(times["rnnlab"])


def run_table(args, device: torch.device) -> dict[tuple[str, str, str], tuple[float, float]]:
    print("| size | cell | mode | torch.nn ms | rnnlab ms | rnnlab / torch.nn |")
    print("|---|---|---|---:|---:|---:|")
    results = {}
    for size in args.sizes:
        for cell in args.cells:
            for mode in args.modes:
                t_ref, t_ours = results[size, cell, mode] = bench_case(cell, size, mode, args.rounds, device, args.threads)
                print(f"| {size} | {cell} | {mode} | {t_ref:.2f} | {t_ours:.2f} | {t_ours / t_ref:.2f} |", flush=True)
    return results


def start_load(spec: str) -> list[subprocess.Popen]:
    """Start the competing load `KIND:N` (see LOADS); returns the processes to stop."""
    kind, _, n = spec.partition(":")
    if kind not in LOADS or not n.isdigit() or int(n) < 1:
        sys.exit(f"--contend {spec}: expected KIND:N with KIND one of {sorted(LOADS)} and N >= 1, e.g. torch:2 or spin:1")
    count, code = (int(n), LOADS[kind]) if kind == "spin" else (1, LOADS[kind].format(n=int(n)))
    env = dict(os.environ, OMP_NUM_THREADS=n) if kind == "torch" else os.environ
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]
    time.sleep(3)  # let it reach its steady state (torch import, warm-up)
    return procs


def contended(args, device: torch.device) -> None:
    print("\n### idle")
    idle = run_table(args, device)
    procs = start_load(args.contend)
    try:
        print(f"\n### beside --contend {args.contend}")
        busy = run_table(args, device)
    finally:
        for p in procs:
            p.kill()
    print(f"\n### slowdown under --contend {args.contend} (contended / idle; 2.0 = a fair share of the cores)")
    print("| size | cell | mode | torch.nn | rnnlab | rnnlab / torch.nn, contended |")
    print("|---|---|---|---:|---:|---:|")
    for key, (t_ref, t_ours) in busy.items():
        i_ref, i_ours = idle[key]
        print(f"| {' | '.join(key)} | {t_ref / i_ref:.2f}x | {t_ours / i_ours:.2f}x | {t_ours / t_ref:.2f} |")


def profile(args) -> None:
    """Where rnnlab's LSTM forward at "charlm" size spends its time, beside torch.nn's, in alternating
    rounds: the GEMMs alone, as either route makes them, and what remains (the pointwise passes,
    copies, overhead). Hoisted: every layer's input projection as one GEMM, then T per-step
    (B, H) x (H, 4H) products. Folded (float32 on the AVX-512 step kernel, the route rnnlab takes
    there): T per-step products [x_t, h_{t-1}] [U, W]ᵀ, (B, I + H) x (I + H, 4H). The route's GEMMs
    are the floor any loop of them has."""
    B, T, I, H, L = SIZES["charlm"]
    ref, ours, x = build("lstm", "charlm", torch.device("cpu"), train=False)
    cells = ours.cells
    inputs = [torch.randn(T, B, I), *[torch.randn(T, B, H) for _ in range(L - 1)]]
    ops = native.ops()

    def projections():
        for cell, inp in zip(cells, inputs):
            cell.project_input(inp)

    def step_gemms(folded: bool):  # the loops' own per-step product (StepGemm in kernels/native/cells.cpp), W packed once
        for cell in cells:
            w = torch.cat([cell.weight_ih, cell.weight_hh], 1) if folded else cell.weight_hh
            a = torch.randn(B, w.size(1))
            if ops is not None:
                ops.step_matmul(a, w, T)
            else:
                for _ in range(T):
                    a @ w.t()

    folds = native.has_step_kernel()
    parts = {"torch.nn forward": lambda: ref(x), "rnnlab forward": lambda: ours(x),
             "hoisted: input projections": projections, "hoisted: per-step GEMMs": lambda: step_gemms(False)}
    if folds:
        parts["folded: per-step GEMMs"] = lambda: step_gemms(True)
    times = {k: [] for k in parts}
    with torch.no_grad():
        for fn in parts.values():
            fn()
        for _ in range(args.rounds):
            for k, fn in parts.items():
                times[k].append(timed(fn, torch.device("cpu")))
    t = {k: statistics.median(v) for k, v in times.items()}
    work = 2 * T * B * 4 * H * (I + (L - 1) * H) + 2 * L * T * B * H * 4 * H  # FLOPs either way
    flops = {"hoisted: input projections": 2 * T * B * 4 * H * (I + (L - 1) * H),
             "hoisted: per-step GEMMs": 2 * L * T * B * H * 4 * H, "folded: per-step GEMMs": work}
    t["hoisted: GEMM floor"] = t["hoisted: input projections"] + t["hoisted: per-step GEMMs"]
    flops["hoisted: GEMM floor"] = work
    floor = "folded: per-step GEMMs" if folds else "hoisted: GEMM floor"
    print(f"\n### LSTM forward at charlm size (B {B}, T {T}, I {I}, H {H}, {L} layers), median of {args.rounds} alternating rounds")
    print(f"rnnlab's route: {'folded' if folds else 'hoisted'}")
    print("| part | ms | GFLOP/s |")
    print("|---|---:|---:|")
    for k in ("hoisted: input projections", "hoisted: per-step GEMMs", "hoisted: GEMM floor", "folded: per-step GEMMs"):
        if k in t:
            print(f"| {k} | {t[k]:.0f} | {flops[k] / t[k] / 1e6:.0f} |")
    print(f"| rnnlab forward | {t['rnnlab forward']:.0f} | {work / t['rnnlab forward'] / 1e6:.0f} |")
    print(f"| ... of which pointwise, copies, overhead (beyond its route's GEMMs) | {t['rnnlab forward'] - t[floor]:.0f} | |")
    print(f"| torch.nn forward (oneDNN) | {t['torch.nn forward']:.0f} | {work / t['torch.nn forward'] / 1e6:.0f} |")


GEMMS = {  # (M, K, N) of the products a recurrent layer makes, as the bench's sizes make them
    "charlm step": (64, 512, 2048), "charlm projection, layer 1": (6400, 128, 2048),
    "charlm projection, layer 2": (6400, 512, 2048), "charlm weight gradient": (2048, 6400, 512),
    "small step": (32, 128, 512), "small projection": (1600, 128, 512), "tiny step": (8, 32, 128),
}


def gemm(args) -> None:
    """float32 GFLOP/s, alternating rounds, of torch's matmul (MKL on x86), of rnnlab's route for
    the products outside the loops (oneDNN from rnnlab.nn.kernels.native.onednn_from()
    multiply-adds, else BLAS) and of its per-step GEMM (StepGemm: the AVX-512 kernel over packed W
    where built, else the same route), a @ wᵀ for w (N, K)."""
    if native.ops() is None:
        sys.exit("--gemm: the native loops did not build here, so there is no route to compare")
    ops = native.ops()
    print(f"\n### float32 GEMM, {torch.get_num_threads()} threads; oneDNN from {native.onednn_from()} multiply-adds")
    print("| product | M x K x N | torch.mm | outside the loops | per-step GEMM |")
    print("|---|---|---:|---:|---:|")
    for name, (M, K, N) in GEMMS.items():
        a, w = torch.randn(M, K), torch.randn(N, K)
        reps = max(1, int(2e8 / (M * K * N)))
        fns = {"torch": lambda: [a @ w.t() for _ in range(reps)], "route": lambda: [ops.matmul(a, w.t(), None) for _ in range(reps)],
               "step": lambda: ops.step_matmul(a, w, reps)}  # W packed once, as for a sequence
        times = {k: [] for k in fns}
        for fn in fns.values():
            fn()
        for _ in range(args.rounds):
            for k, fn in fns.items():
                times[k].append(timed(fn, torch.device("cpu")) / reps)
        rate = {k: f"{2 * M * K * N / statistics.median(v) / 1e6:.0f}" for k, v in times.items()}
        print(f"| {name} | {M} x {K} x {N} | {rate['torch']} | {rate['route']} | {rate['step']} |", flush=True)


# For a child that measures peak memory: large blocks mmapped, so freed memory leaves the resident set.
MEMORY_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")


def step_peak_mib(module: torch.nn.Module, x: torch.Tensor) -> float:
    """The peak memory (MiB) one training step of `module` on `x` adds above the resident set before
    it, after a warm-up step (one-time allocations, kernels and caches, are not the step's)."""
    step(module, x, True)
    module.zero_grad(set_to_none=True)  # as a trainer does between steps
    x.grad = None

    def status(field: str) -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak (VmHWM) to the current RSS
        f.write("5")
    step(module, x, True)
    return status("VmHWM:") - before


def memory_child(side: str, cell: str, size: str) -> None:
    """In a fresh process: the peak memory (MiB) one training step adds, printed as JSON."""
    ref, ours, x = build(cell, size, torch.device("cpu"), train=True)
    print(json.dumps({"peak_mib": step_peak_mib(ref if side == "torch" else ours, x)}))


def memory(args) -> None:
    print("\n### peak memory of one training step (forward + backward), MiB above the resident set before it")
    print("| size | cell | torch.nn MiB | rnnlab MiB | rnnlab / torch.nn |")
    print("|---|---|---:|---:|---:|")
    for cell in args.cells:
        peak = {}
        for side in ("torch", "rnnlab"):
            cmd = [sys.executable, __file__, "--memory-child", side, cell, "charlm"]
            out = subprocess.run(cmd, env=MEMORY_ENV, capture_output=True, text=True, check=True).stdout
            peak[side] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
        print(f"| charlm | {cell} | {peak['torch']:.0f} | {peak['rnnlab']:.0f} | {peak['rnnlab'] / peak['torch']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"], choices=list(TORCH))
    parser.add_argument("--modes", nargs="+", default=["train", "forward"], choices=["train", "forward"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default="all", help="CPU threads for both sides: all (torch's default), auto "
                        "(one where a step is small, as train.py's threads=auto), or a number")
    parser.add_argument("--contend", metavar="KIND:N", help="also measure beside a competing load: spin:N or torch:N")
    parser.add_argument("--memory", action="store_true", help="only measure the peak memory of a training step")
    parser.add_argument("--profile", action="store_true", help="only the LSTM forward's time split at charlm size")
    parser.add_argument("--gemm", action="store_true", help="only torch.mm against rnnlab's GEMMs, GFLOP/s")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(*args.memory_child)
    if args.memory:
        return memory(args)
    if args.profile:
        return profile(args)
    if args.gemm:
        return gemm(args)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {DEFAULT_THREADS} threads, --threads {args.threads}"
    print(f"torch {torch.__version__} on {name}; median of {args.rounds} alternating rounds")
    if args.contend:
        contended(args, device)
    else:
        run_table(args, device)


if __name__ == "__main__":
    main()
