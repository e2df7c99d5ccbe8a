"""HFPolicy in-process vs ServerPolicy -> ``envkit serve``, and the cost of an adapter sync.

Side by side in one run, same model and sampling settings:

1. tokens/s of N concurrent single-turn requests answered by ``HFPolicy`` in this process and by
   ``ServerPolicy`` through a real ``envkit serve`` subprocess (HTTP, JSON, a second process);
   rounds alternate so that machine noise hits both;
2. the adapter sync a trainer does after each optimizer step: ``save_pretrained`` of a LoRA
   adapter (r=16, all-linear) and ``POST /v1/load_lora_adapter`` of it (plus the unload).

    python benchmarks/bench_server.py                        # tiny-random
    python benchmarks/bench_server.py --model smollm2-135m   # the real 135M model
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def requests(n: int) -> list[Any]:
    from envkit.types import GenerationRequest, Message

    return [
        GenerationRequest(
            messages=[Message(role="user", content=f"Write a short story about the number {i}.")]
        )
        for i in range(n)
    ]


def tokens_per_s(policy: Any, n: int) -> tuple[float, int, float]:
    """(tokens/s, tokens, seconds) of one round of ``n`` concurrent requests."""
    start = time.perf_counter()
    completions = policy.generate(requests(n))
    seconds = time.perf_counter() - start
    tokens = sum(len(c.token_ids or []) for c in completions)
    return tokens / seconds, tokens, seconds


def stats(url: str) -> dict[str, Any]:
    """``GET /envkit/stats`` of the server."""
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/envkit/stats", timeout=30) as r:
        return json.load(r)


def adapter_sync(model_name: str, server_url: str, rank: int, rounds: int) -> dict[str, float]:
    """Median seconds of saving a LoRA adapter and of the server loading/unloading it."""
    from peft import LoraConfig, get_peft_model

    from envkit.models import load_model
    from envkit.policies import ServerPolicy

    base, _ = load_model(model_name)
    peft_model = get_peft_model(
        base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear")
    )
    client = ServerPolicy(server_url, model_name)
    saves, loads, unloads = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            path = Path(tmp) / f"step{i}"
            start = time.perf_counter()
            peft_model.save_pretrained(str(path))
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.load_adapter(path, f"step{i}")
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.unload_adapter(f"step{i}")
            unloads.append(time.perf_counter() - start)
        size = sum(f.stat().st_size for f in (Path(tmp) / "step0").iterdir())
    client.close()
    return {
        "save_s": statistics.median(saves),
        "load_s": statistics.median(loads),
        "unload_s": statistics.median(unloads),
        "mb": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--requests", type=int, default=16, help="concurrent requests per round")
    parser.add_argument("--tokens", type=int, default=32, help="max new tokens per request")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank of the synced adapter")
    args = parser.parse_args()

    from envkit.models import load_model
    from envkit.policies import HFPolicy, ServerPolicy
    from envkit.serving.process import ServerProcess

    model, tok = load_model(args.model, device="cpu")
    settings = {"max_new_tokens": args.tokens, "temperature": 1.0, "seed": 0}
    local = HFPolicy(model, tok, max_batch_size=args.requests, **settings)
    server_args = ["--max-batch-size", str(args.requests), "--device", "cpu", "--seed", "0"]
    with ServerProcess(args.model, args=server_args, startup_timeout_s=600) as server:
        remote = ServerPolicy(server.url, args.model, tokenizer=tok, **settings)
        tokens_per_s(local, 2), tokens_per_s(remote, 2)  # warm-up
        rates: dict[str, list[float]] = {"in-process": [], "server": []}
        local_batches, served_before = local.stats.batches, stats(server.url)["batches"]
        for _ in range(args.rounds):
            rates["in-process"].append(tokens_per_s(local, args.requests)[0])
            rates["server"].append(tokens_per_s(remote, args.requests)[0])
        local_batches = (local.stats.batches - local_batches) / args.rounds
        served_batches = (stats(server.url)["batches"] - served_before) / args.rounds
        remote.close()
        sync = adapter_sync(args.model, server.url, args.rank, args.rounds)

    inproc, served = statistics.median(rates["in-process"]), statistics.median(rates["server"])
    print(f"\n{args.model}, {args.requests} concurrent requests x {args.tokens} tokens, CPU")
    print("| policy | tokens/s (median of rounds) | ratio | batches per round |")
    print("|---|---|---|---|")
    print(f"| HFPolicy in-process | {inproc:.0f} | 1.00x | {local_batches:.1f} |")
    print(
        f"| ServerPolicy -> envkit serve | {served:.0f} | {served / inproc:.2f}x "
        f"| {served_batches:.1f} |"
    )
    print(f"\nadapter sync, LoRA r={args.rank} all-linear ({sync['mb']:.1f} MiB)")
    print("| step | seconds (median) |")
    print("|---|---|")
    print(f"| save_pretrained | {sync['save_s']:.3f} |")
    print(f"| POST /v1/load_lora_adapter | {sync['load_s']:.3f} |")
    print(f"| POST /v1/unload_lora_adapter | {sync['unload_s']:.3f} |")
    print(f"| sync total (save + load) | {sync['save_s'] + sync['load_s']:.3f} |")


if __name__ == "__main__":
    main()
