"""One command that checks envkit on a CUDA GPU and prints one table (< 8 minutes on one GPU).

Steps: the CUDA tests (``pytest -m gpu``), a 4-step ``envkit train`` through the CLI on a saved
random-init model directory, ``bench_train_gpu.py`` at 8x8x64 and 16x8x256, the engine
comparison (``bench_engines.py``), a multi-turn ``envkit eval`` of GuessNumber and, whenever
``vllm`` is importable, ``VLLMPolicy`` on a real ``vllm.LLM`` (a few prompts sampled through
``HFPolicy``'s public call; ids and log-probabilities non-empty and finite, and equal to an HF
forward pass within ``--vllm-tol``); without vllm that row says "skipped: vllm not installed".
Each step runs in its own process with a time limit; a failed step is reported with its last
output line and the others still run.

    python benchmarks/gpu_check.py                 # on the CUDA machine
    python benchmarks/gpu_check.py --device cpu    # the same steps, small, on the CPU (a dry run)
    python benchmarks/gpu_check.py --vllm-only     # only the VLLMPolicy row

On a machine without trl/datasets/gymnasium/pydantic, carry ``.gpu/`` made by
``shared/gpu/prepare.sh``: its wheels are installed into /tmp/site (PYTHONPATH) first and its
tokenizer folder ``.gpu/tok`` replaces the 98 MB SmolLM2 wheel.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = Path("/tmp/site")


def carried_wheels(env: dict[str, str]) -> str:
    """Installs ``.gpu/whl`` into /tmp/site when trl is missing; returns what it did."""
    wheels = sorted((ROOT / ".gpu" / "whl").glob("*.whl"))
    if importlib.util.find_spec("trl") is not None:
        return "trl installed"
    if not wheels:
        return "trl missing and no .gpu/whl (run shared/gpu/prepare.sh and carry .gpu)"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--upgrade", "--target", str(SITE), *map(str, wheels)]
    subprocess.run(cmd, check=True)
    env["PYTHONPATH"] = f"{SITE}:{env.get('PYTHONPATH', '')}".rstrip(":")
    return f"installed {len(wheels)} carried wheels into {SITE}"


def save_model(out: Path, device: str, tokenizer: str | None) -> str:
    """Saves the random-init model the checks load as a directory (small on the CPU)."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from random_llama import random_llama, saved_tokenizer
from envkit.models import load_model
tok_dir = {tokenizer!r}
tok = saved_tokenizer(tok_dir) if tok_dir else load_model("tiny-random")[1]
model = random_llama(tok, small={not device.startswith("cuda")!r},
    pad_token_id=tok.pad_token_id or tok.eos_token_id)
model.save_pretrained({str(out)!r}); tok.save_pretrained({str(out)!r})
"""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def steps(args: argparse.Namespace, model_dir: Path, tok: str | None) -> list[tuple[str, str, int]]:
    """``(name, shell command, time limit s)`` of every check."""
    py = shlex.quote(sys.executable)
    gpu = args.device != "cpu"
    dev = args.device
    tok_arg = f" --tokenizer {shlex.quote(tok)}" if tok else ""
    out = shlex.quote(str(ROOT / "runs" / "gpu_check"))
    train = (
        f"{py} -m envkit.cli train Arithmetic-v0 --model {model_dir} --steps 4 --group-size 4 "
        f"--groups-per-step 2 --max-new-tokens {64 if gpu else 8} --device {dev} "
        f"--out {out}/train --overwrite --set progress=false --set kl_to_base_every=2"
    )
    engines = f"{py} benchmarks/bench_engines.py --device {dev}"
    engines += f" --random-llama{tok_arg}" if gpu and tok else f" --episodes {64 if gpu else 8}"
    evaluate = (
        f"{py} -m envkit.cli eval GuessNumber-v0 --model {model_dir} -n {32 if gpu else 2} -g 2 "
        f"--max-tokens 16 --device {dev} -k max_turns=7"
    )
    plan = [
        ("CUDA tests (pytest -m gpu)", f"{py} -m pytest -q -p no:cacheprovider -m gpu tests", 150),
        ("envkit train, 4 steps (CLI)", train, 120),
        ("bench_train_gpu 8x8x64", f"{py} benchmarks/bench_train_gpu.py --steps 6{tok_arg}", 150),
        (
            "bench_train_gpu 16x8x256",
            f"{py} benchmarks/bench_train_gpu.py --steps 4 --warmup 1 --prompts 16 --tokens 256"
            + tok_arg,
            200,
        ),
        ("engines: padded vs continuous", engines, 150),
        ("envkit eval GuessNumber (multi-turn)", evaluate, 90),
    ]
    if not gpu:  # the dry run: what runs without a GPU, small
        plan = [p for p in plan if "bench_train_gpu" not in p[0] and "CUDA" not in p[0]]
    return plan


def vllm_available(env: dict[str, str]) -> bool:
    """Whether ``vllm`` is importable by the steps' interpreter (with ``env``'s PYTHONPATH)."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    return subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def vllm_step(
    args: argparse.Namespace, model_dir: Path, env: dict[str, str]
) -> tuple[str, str, int] | str:
    """The ``VLLMPolicy`` check as ``(name, command, limit)``, or why it is skipped."""
    if not vllm_available(env):
        return "skipped: vllm not installed"
    if args.device == "cpu":
        return "skipped: vllm is installed but the dry run has no CUDA device"
    py = shlex.quote(sys.executable)
    command = (
        f"{py} benchmarks/gpu_check.py --vllm-check {shlex.quote(str(model_dir))} "
        f"--device {args.device} --vllm-tol {args.vllm_tol}"
    )
    return (VLLM_ROW, command, 300)


VLLM_ROW = "VLLMPolicy on vllm.LLM"


def vllm_check(model_dir: str, device: str, tol: float, prompts: int = 4, tokens: int = 16) -> None:
    """Samples ``prompts`` conversations with ``VLLMPolicy`` on a real ``vllm.LLM``; checks them.

    Raises:
        AssertionError: no tokens, missing or non-finite log-probabilities, or log-probabilities
            further than ``tol`` from an HF forward pass over the same tokens (temperature 1).
    """
    import math

    import torch
    from vllm import LLM

    from envkit.models import load_model
    from envkit.trainers.vllm_policy import VLLMPolicy
    from envkit.types import GenerationRequest, Message

    llm = LLM(
        model=model_dir,
        dtype="float16",
        gpu_memory_utilization=0.3,
        enforce_eager=True,
        max_model_len=1024,
        seed=0,
    )
    model, tok = load_model(model_dir, device=device, dtype=torch.float32)
    policy = VLLMPolicy(llm, model, tok, max_new_tokens=tokens, temperature=1.0, seed=0)
    questions = ["What is 2 + 2?", "Name a colour.", "Say hi.", "Count to three."]
    requests = [
        GenerationRequest(messages=[Message(role="user", content=questions[i % 4])])
        for i in range(prompts)
    ]
    completions = policy.generate(requests)
    worst, total, count = 0.0, 0.0, 0
    for c in completions:
        ids, logprobs = c.token_ids or [], c.logprobs or []
        assert ids and len(ids) == len(logprobs), (ids, logprobs)
        assert all(math.isfinite(x) and x <= 0 for x in logprobs), logprobs
        prompt = c.prompt_token_ids or []
        with torch.no_grad():
            logits = model(torch.tensor([prompt + ids], device=model.device)).logits[0].float()
        ref = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        expected = ref.gather(1, torch.tensor(ids, device=ref.device)[:, None])[:, 0].tolist()
        diffs = [abs(a - b) for a, b in zip(logprobs, expected, strict=True)]
        worst, total, count = max(worst, *diffs), total + sum(diffs), count + len(diffs)
    assert worst <= tol, f"vLLM logprobs differ from the HF forward pass by up to {worst:.3g}"
    print(
        f"vllm: {len(completions)} prompts, {count} tokens, |logprob - HF| mean "
        f"{total / count:.2e} max {worst:.2e} (tol {tol})",
        flush=True,
    )


def run_step(name: str, command: str, limit: int, env: dict[str, str]) -> tuple[str, float, str]:
    """Runs one check; returns (status, seconds, the last meaningful output line)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit
        )
        status = "ok" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status = f"TIMEOUT ({limit}s)"
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else ""
    seconds = time.perf_counter() - start
    log = ROOT / "runs" / "gpu_check" / f"{name.split()[0].lower()}-{abs(hash(name)) % 1000}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {command}\n{output}", encoding="utf-8")
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    keys = (
        "=>",
        "x)",
        "passed",
        "failed",
        "continuous /",
        "tokens/s",
        "adapter:",
        "wall s",
        "vllm:",
    )
    figure = next((ln for ln in reversed(lines) if any(k in ln for k in keys)), "")
    if status != "ok":
        figure = lines[-1] if lines else ""
    print(f"[{status}] {name} ({seconds:.0f}s): {figure}", flush=True)
    return status, seconds, figure[:110]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (dry run)")
    parser.add_argument("--tokenizer", default=None, help="default: .gpu/tok when it exists")
    parser.add_argument("--vllm-tol", type=float, default=0.1, help="most |logprob - HF| allowed")
    parser.add_argument("--vllm-only", action="store_true", help="run the VLLMPolicy row only")
    parser.add_argument("--vllm-check", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vllm_check:  # the VLLMPolicy step, run in its own process by the table
        vllm_check(args.vllm_check, args.device, args.vllm_tol)
        return
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    env.update(TOKENIZERS_PARALLELISM="false", TRL_EXPERIMENTAL_SILENCE="1")
    print(f"gpu_check: {carried_wheels(env)}", flush=True)
    tok = args.tokenizer or (
        str(ROOT / ".gpu" / "tok") if (ROOT / ".gpu" / "tok").is_dir() else None
    )
    model_dir = ROOT / "runs" / "gpu_check" / "model"
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(save_model(model_dir, args.device, tok), shell=True, env=env, check=True)
    total = time.perf_counter()
    plan = [] if args.vllm_only else steps(args, model_dir, tok)
    rows = [(name, *run_step(name, cmd, limit, env)) for name, cmd, limit in plan]
    vllm = vllm_step(args, model_dir, env)
    if isinstance(vllm, str):
        print(f"[{vllm}] {VLLM_ROW}", flush=True)
        rows.append((VLLM_ROW, vllm, 0.0, ""))
    else:
        rows.append((vllm[0], *run_step(*vllm, env)))
    device = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch;print(torch.cuda.get_device_name(0) "
            "if torch.cuda.is_available() else 'no CUDA device', 'torch', torch.__version__)",
        ],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    print(f"\n## gpu_check on {device} ({time.perf_counter() - total:.0f} s)\n")
    print("| check | status | s | figure |\n|---|---|---|---|")
    for name, status, seconds, figure in rows:
        print(f"| {name} | {status} | {seconds:.0f} | {figure.replace('|', '/')} |")
    if any(status != "ok" and not status.startswith("skipped") for _, status, _, _ in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
