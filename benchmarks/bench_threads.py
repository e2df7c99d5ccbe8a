"""Two training processes side by side on this machine: torch with its default threads (one per
core) in each, against one thread each.

``make test`` runs two chains at once (the suite, and the learning test then the floors job), and
both train torch models. With torch's default of one thread per core, two processes run twice as
many busy threads as there are cores, and OpenMP's threads spin while they wait for each other.
This prints the wall time of the pair both ways and the ratio (goal: one thread each is faster
when two processes share the cores; ``scripts/test.sh`` sets ``OMP_NUM_THREADS=1`` from it).

    python benchmarks/bench_threads.py            # ~2-4 min on 2 cores
    python benchmarks/bench_threads.py --steps 3  # quicker, noisier
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

WORK = r"""
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=8,
                  num_attention_heads=9, num_key_value_heads=3, vocab_size=49152)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg)  # SmolLM2-135M's widths, 8 of its 30 layers, random weights
opt = torch.optim.SGD(model.parameters(), lr=1e-4)
x = torch.randint(0, cfg.vocab_size, (8, 64))
for _ in range(int(sys.argv[2])):
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    opt.zero_grad()
"""


def pair(threads: int, steps: int, processes: int) -> float:
    """Seconds until ``processes`` training processes with ``threads`` torch threads all end."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORK, str(threads), str(steps)], env=env)
        for _ in range(processes)
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a training process failed (exit {p.returncode})")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps per process")
    parser.add_argument("--processes", type=int, default=2, help="processes side by side")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    times: dict[int, list[float]] = {cores: [], 1: []}
    for _ in range(args.rounds):  # alternate, so that load from elsewhere hits both alike
        for threads in times:
            times[threads].append(pair(threads, args.steps, args.processes))
    default, one = min(times[cores]), min(times[1])
    print(
        f"{args.processes} processes x {args.steps} steps on {cores} cores (best of {args.rounds}):"
    )
    print(f"  torch threads = {cores} (default) each: {default:6.1f} s")
    print(f"  torch threads = 1 each:{'':14}{one:6.1f} s")
    print(f"  one thread each is {default / one:.2f}x faster (goal: > 1 when processes > 1)")


if __name__ == "__main__":
    main()
