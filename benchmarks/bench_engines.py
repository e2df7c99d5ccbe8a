"""HFPolicy engines side by side: tokens/s of 64 concurrent multi-turn GuessNumber episodes.

``padded`` (left-padded ``model.generate`` batches) against ``continuous`` (transformers'
continuous batching with paged attention): the turns of concurrent episodes arrive at different
times, which padded batches handle by waiting and padding. Same model, same episodes, same
sampling settings; prints sampled tokens per second of each engine and their ratio.

    python benchmarks/bench_engines.py                       # tiny-random on the CPU
    python benchmarks/bench_engines.py --model smollm2-135m  # a real 135M model
    python benchmarks/bench_engines.py --device cuda --tokenizer .gpu/tok --random-llama
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model and tokenizer the benchmark runs (on ``args.device``)."""
    from envkit.devices import resolve_device, resolve_dtype
    from envkit.models import load_model

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    if args.random_llama:
        from random_llama import random_llama, saved_tokenizer

        tok = saved_tokenizer(args.tokenizer)
        return random_llama(tok).to(device, dtype).eval(), tok
    return load_model(args.model, device=device, dtype=dtype)


def run(engine: str, model: Any, tok: Any, args: argparse.Namespace) -> dict[str, float]:
    """Plays the episodes with one engine; returns tokens, seconds and tokens/s."""
    from envkit.policies import HFPolicy
    from envkit.rollout import collect

    policy = HFPolicy(
        model,
        tok,
        max_new_tokens=args.tokens,
        temperature=1.0,
        max_batch_size=args.episodes,
        seed=0,
        engine=engine,
    )
    kwargs = {"max_turns": args.turns}
    try:
        collect("GuessNumber-v0", policy, seeds=[0], group_size=2, env_kwargs=kwargs)  # warm-up
        start = time.perf_counter()
        groups = collect(
            "GuessNumber-v0",
            policy,
            seeds=list(range(args.episodes)),
            group_size=1,
            concurrency=args.episodes,
            env_kwargs=kwargs,
            progress=False,
        )
        wall = time.perf_counter() - start
    finally:
        policy.close()
    tokens = sum(len(c.token_ids or []) for g in groups for t in g for c in t.completions)
    turns = sum(len(t.completions) for g in groups for t in g)
    return {"tokens": tokens, "turns": turns, "seconds": wall, "tokens_per_s": tokens / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-random", help="a load_model spec")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=16, help="max new tokens per turn")
    parser.add_argument("--random-llama", action="store_true", help="bench_train_gpu's 0.4B model")
    parser.add_argument("--tokenizer", default=".gpu/tok", help="with --random-llama")
    args = parser.parse_args()

    from envkit.policies.hf_continuous import unsupported_reason

    model, tok = load(args)
    param = next(model.parameters())
    print(
        f"{args.episodes} concurrent GuessNumber episodes x <= {args.turns} turns x "
        f"<= {args.tokens} tokens; {type(model).__name__} on {param.device} ({param.dtype})"
    )
    engines = ["padded"]
    reason = unsupported_reason(1.0, 1.0, 0)
    if reason is None:
        engines.append("continuous")
    else:
        print(f"continuous engine skipped: {reason}")
    results = {engine: run(engine, model, tok, args) for engine in engines}
    print(f"{'engine':<12}{'turns':>7}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}")
    for engine, r in results.items():
        print(
            f"{engine:<12}{r['turns']:>7}{r['tokens']:>8}{r['seconds']:>9.2f}"
            f"{r['tokens_per_s']:>10.1f}"
        )
    if len(results) == 2:
        ratio = results["continuous"]["tokens_per_s"] / results["padded"]["tokens_per_s"]
        print(f"continuous / padded tokens/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
