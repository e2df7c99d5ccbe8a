"""``envkit train`` and ``envkit report``: GRPO + LoRA training from the command line.

Mount them on the main app with ``app.command("train")(train_command)`` and
``app.command("report")(report_command)``.

Examples::

    envkit train Arithmetic-v0 --model smollm2-135m -k operators=+* -k max_turns=1 \\
        --steps 40 --out runs/arith
    envkit train --resume --out runs/arith          # after a crash or kill -9
    envkit train Arithmetic-v0:2 Countdown-v0:1 --model smollm2-135m \\
        -k max_turns=1 -k Arithmetic-v0.operators=+*    # a mixture: 2/3 and 1/3 of the groups
    envkit train Arithmetic-v0 --model smollm2-135m --config train.yaml --set learning_rate=2e-4
    envkit train my_pkg.agents:solve --tasks tasks.jsonl --model smollm2-135m \
        --judge openai/gpt-4.1-mini               # an agent of yours, scored by a RULER judge
    envkit train my_pkg.agents:solve --tasks tasks.jsonl --model smollm2-135m --reward exact_match
    envkit train My-v0 --import my_envs --model smollm2-135m   # an env registered in my_envs.py
    envkit report runs/arith
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from envkit.cli._imports import ImportOption, import_modules

__all__ = ["report_command", "train_command"]

err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _kwargs(items: list[str] | None) -> dict[str, Any]:
    from envkit._kv import KeyValueError, parse_items

    try:
        return parse_items(items, example="--kwarg max_turns=2")
    except KeyValueError as e:
        raise _fail(str(e)) from None


def _split_kwargs(
    items: list[str] | None, envs: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """``-k KEY=VALUE`` items for every env, and ``-k ENV_ID.KEY=VALUE`` items per env (full id)."""
    shared: list[str] = []
    per_env: dict[str, list[str]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        env, dot, name = key.rpartition(".")
        if not sep or not dot:
            shared.append(item)
            continue
        fid = _full(env)
        if fid not in envs:
            raise _fail(
                f"-k {item!r} is for env {env!r}, which is not trained here "
                f"({', '.join(envs)}); write -k ENV_ID.KEY=VALUE with one of them, or -k "
                "KEY=VALUE for every env"
            )
        per_env.setdefault(fid, []).append(f"{name}={value}")
    return shared, per_env


def _envs(specs: list[str], kwarg: list[str] | None) -> tuple[Any, dict[str, Any] | None]:
    """The trainer's env (one id, or an ``EnvMixture`` for several / weighted ids) and the
    kwargs every env gets (``config.env_kwargs``)."""
    from envkit.trainers.mixture import EnvMixture, parse_env_weight

    parsed = []
    for text in specs:
        try:
            env_id, weight = parse_env_weight(text)
        except ValueError as e:
            raise _fail(str(e)) from None
        parsed.append((_resolve_env(env_id), weight))
    ids = [fid for fid, _ in parsed]
    shared, per_env = _split_kwargs(kwarg, ids)
    if len(parsed) == 1:  # one env: ENV.KEY=VALUE is just KEY=VALUE
        merged = _kwargs(shared + per_env.get(ids[0], []))
        return ids[0], merged or None
    try:
        mixture = EnvMixture(
            [(fid, 1.0 if w is None else w, _kwargs(per_env.get(fid))) for fid, w in parsed]
        )
    except ValueError as e:
        raise _fail(_plain(e)) from None
    return mixture, _kwargs(shared) or None


def _plain(error: ValueError) -> str:
    """A pydantic error's messages without its boilerplate."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        return "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in errors())
    return str(error)


def _reward(reward: str | None, judge: str | None, judge_api_base: str | None) -> Any:
    if reward and judge:
        raise _fail("pass --reward or --judge, not both (combine them in a Rubric from Python)")
    if judge:
        from envkit.rewards import RulerJudge

        return (
            RulerJudge(model=judge, api_base=judge_api_base)
            if judge_api_base
            else RulerJudge(model=judge)
        )
    if reward:
        from envkit.rewards import get

        try:
            get(reward)
        except KeyError as e:
            raise _fail(str(e).strip("'\"")) from None
        return reward
    return None


def _is_agent_spec(text: str) -> bool:
    """Whether a positional argument names an agent (``module:function``), not ``ID[:WEIGHT]``."""
    head, sep, tail = text.rpartition(":")
    if not sep or not head.replace(".", "_").isidentifier() or not tail:
        return False
    try:
        float(tail)
    except ValueError:
        return tail.replace(".", "_").isidentifier()
    return False


def _agent_env(specs: list[str], tasks: Path | None, reward: str | None) -> str:
    """Registers the agent ``module:function`` on ``--tasks`` as an env for this run; its id."""
    import os
    import sys

    from envkit.environments.agent import register_agent

    if len(specs) != 1:
        raise _fail(
            f"give one agent as module:function (got {' '.join(specs) or 'none'}); agents do "
            "not mix with other envs from the command line (use EnvMixture from Python)"
        )
    if tasks is None:
        raise _fail(
            f"the agent {specs[0]!r} needs its tasks: --tasks FILE.jsonl (one "
            '{"prompt": ..., "answer": ...} a line)'
        )
    if not tasks.is_file():
        raise _fail(f"--tasks {tasks}: no such file")
    if reward is not None:
        _reward(reward, None, None)  # an unknown name fails here, with the known ones
    if os.getcwd() not in sys.path:  # an agent module beside the user, as `python -m` finds it
        sys.path.insert(0, os.getcwd())
    name = specs[0].rpartition(":")[2].replace(".", "_").replace("_", "-").strip("-") or "agent"
    try:
        return register_agent(
            f"agent-{name}-v0", agent=specs[0], tasks=str(tasks), reward=reward, override=True
        )
    except (ImportError, AttributeError, TypeError, ValueError, KeyError) as e:
        raise _fail(f"{type(e).__name__}: {e}") from None


def _resumed_reward(spec: Any) -> Any:
    if spec is None or isinstance(spec, str):
        return _reward(spec, None, None)
    if isinstance(spec, dict) and spec.get("judge"):
        return _reward(None, spec["judge"], None)
    raise _fail(
        f"this run was trained with a Python reward ({spec}); resume it from Python with "
        "GRPOTrainer(..., reward=...).train(resume=True)"
    )


def _config(
    config_file: Path | None,
    sets: list[str],
    flags: dict[str, Any],
    resume_dir: Path | None,
) -> Any:
    from envkit.trainers import GRPOConfig

    try:
        if resume_dir is not None:
            cfg = GRPOConfig.from_yaml(resume_dir / "config.yaml")
        elif config_file is not None:
            cfg = GRPOConfig.from_yaml(config_file)
        else:
            cfg = GRPOConfig()
        cfg = cfg.override({k: v for k, v in flags.items() if v is not None})
        return cfg.override(sets)
    except (ValueError, FileNotFoundError) as e:
        raise _fail(str(e)) from None


def train_command(
    env_id: Annotated[
        list[str] | None,
        typer.Argument(
            help="Env id, e.g. Arithmetic-v0 (omit with --resume). Several ids train on a "
            "mixture: ID[:WEIGHT] ... (Arithmetic-v0:2 Countdown-v0:1; weight 1 when left "
            "out); each GRPO group comes from one env, drawn by weight. Or an agent of yours, "
            "module:function (async def solve(client, task) -> answer, client an "
            "openai.AsyncOpenAI), with --tasks FILE.jsonl: it calls the policy through envkit's "
            "gateway and trains on the token ids it sampled.",
            metavar="ENV_ID[:WEIGHT]...",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="smollm2-135m (bundled), tiny-random, a HF model directory or a hub id.",
        ),
    ] = None,
    tasks: Annotated[
        Path | None,
        typer.Option(
            help="With an agent given as module:function instead of ENV_ID: a JSONL file of its "
            'tasks, one {"prompt": ..., "answer": ...} a line (other columns go to task.info).',
        ),
    ] = None,
    reward: Annotated[
        str | None, typer.Option(help="A registered reward name (default: the env's reward).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Score groups with a RULER-style judge (litellm model); an agent without "
            "--reward needs it.",
        ),
    ] = None,
    judge_api_base: Annotated[str | None, typer.Option(help="API base URL of the judge.")] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", "-s", min=1, help="Optimizer steps.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its last checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Delete the run already in --out and start a new one.")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="A YAML file of GRPOConfig fields.")
    ] = None,
    kwarg: Annotated[
        list[str] | None,
        typer.Option(
            "--kwarg",
            "-k",
            help="Env constructor argument KEY=VALUE (repeatable); with several envs KEY=VALUE "
            "goes to every env and ENV_ID.KEY=VALUE (Countdown-v0.max_turns=2) to that env "
            "only. VALUE is JSON when it parses, else the text as typed.",
        ),
    ] = None,
    group_size: Annotated[
        int | None, typer.Option("--group-size", "-g", help="Episodes per task.")
    ] = None,
    groups_per_step: Annotated[int | None, typer.Option(help="Tasks per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens per turn.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Checkpoint every K steps.")] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Held-out evaluation every N steps.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed.")] = None,
    report_to: Annotated[
        list[str] | None, typer.Option(help="tensorboard, wandb, ... (repeatable).")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto (default: CUDA when available, bf16 there), cpu, cuda or cuda:N."),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16 or float16."),
    ] = None,
    max_staleness: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Play the next K steps' episodes while the current step trains, with an adapter "
            "at most K steps old (importance-weighted loss); 0: synchronous (default).",
        ),
    ] = None,
    policy_server: Annotated[
        str | None,
        typer.Option(
            help="Sample rollouts through this OpenAI/vLLM-compatible server (base URL); the "
            "adapter is pushed to it after every optimizer step (runtime LoRA loading).",
        ),
    ] = None,
    policy_server_model: Annotated[
        str | None, typer.Option(help="The base model name --policy-server serves.")
    ] = None,
    rollout_backend: Annotated[
        str | None,
        typer.Option(
            help="Where episodes run: local (default) or ray (Ray workers; needs --policy-server).",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address for --rollout-backend ray (default: local)."),
    ] = None,
    ray_workers_per_node: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Ray actors per node for --rollout-backend ray (default 1; each keeps its own "
            "envs and sandbox pool for the whole run).",
        ),
    ] = None,
    ray_max_retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Times a group lost with its Ray actor is replayed on a live one "
            "(default 0: its episodes count as infra_error).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any GRPOConfig field as KEY=VALUE (repeatable)."),
    ] = None,
    imports: ImportOption = None,
) -> None:
    """Train a LoRA adapter on an environment with GRPO; leaves a run folder (see docs)."""
    if resume and overwrite:
        raise _fail("--resume continues the run in --out and --overwrite deletes it: pick one")
    if resume and imports:
        raise _fail(
            "--resume imports the modules the run was started with (imports.json in its "
            "folder): drop --import"
        )
    if resume:
        import_modules(_resumed_imports(out))
    else:
        import_modules(imports)
    if resume:
        run_info = _check_resume(out, env_id, model, bool(kwarg or reward or judge or config))
    else:
        run_info = {}
        _prepare_new_run(env_id, model, out, overwrite)
    flags = {
        "max_steps": steps,
        "output_dir": str(out) if out is not None else None,
        "group_size": group_size,
        "groups_per_step": groups_per_step,
        "learning_rate": learning_rate,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "save_steps": save_steps,
        "eval_every": eval_every,
        "seed": seed,
        "report_to": report_to,
        "device": device,
        "dtype": dtype,
        "max_staleness": max_staleness,
        "policy_server": policy_server,
        "policy_server_model": policy_server_model,
        "rollout_backend": rollout_backend,
        "ray_address": ray_address,
        "ray_workers_per_node": ray_workers_per_node,
        "ray_max_retries": ray_max_retries,
    }
    env: Any = None
    agent = not resume and (tasks is not None or any(_is_agent_spec(text) for text in env_id or []))
    if agent:
        if reward and judge:
            raise _fail("pass --reward or --judge, not both")
        env = _agent_env(list(env_id or []), tasks, reward)
        flags["env_kwargs"] = _kwargs(kwarg) or None
        flags["judge_model"], flags["judge_api_base"] = judge, judge_api_base
    elif not resume:
        env, flags["env_kwargs"] = _envs(list(env_id or []), kwarg)
    cfg = _config(config, list(set_ or []), flags, out if resume else None)
    if resume:
        env, model_spec = _resumed_agent(out) or _resumed_env(run_info), run_info.get("model")
        reward_obj = _resumed_reward(run_info.get("reward"))
    elif agent:  # the agent env scores with --reward; --judge is the run's RULER judge
        model_spec, reward_obj = model, None
    else:
        model_spec = model
        reward_obj = _reward(reward, judge, judge_api_base)
    console = Console()
    trainer = _build_trainer(model_spec, env, reward_obj, cfg, console)
    if agent:  # what --resume needs to register the agent env again
        spec = {
            "agent": env_id[0] if env_id else None,
            "tasks": str(Path(tasks).resolve()),
            "reward": reward,
        }
        trainer.run.mkdir()
        (trainer.run.path / AGENT_FILE).write_text(json.dumps(spec), encoding="utf-8")
    if imports:  # what --resume imports again
        trainer.run.mkdir()
        (trainer.run.path / IMPORTS_FILE).write_text(
            json.dumps([_absolute_import(text) for text in imports]), encoding="utf-8"
        )
    _run_training(trainer, resume, console)


IMPORTS_FILE = "imports.json"
"""In the run folder of a run started with ``--import``: the modules (``.py`` paths made
absolute), which ``--resume`` imports again before it rebuilds the env."""


def _absolute_import(text: str) -> str:
    path = Path(text)
    return str(path.resolve()) if text.endswith(".py") or "/" in text else text


def _resumed_imports(out: Path | None) -> list[str]:
    path = Path(out) / IMPORTS_FILE if out is not None else None
    if path is None or not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")))


AGENT_FILE = "agent.json"
"""In the run folder of an agent trained from the command line: its module:function, tasks
file and reward (``--resume`` registers the agent env again from it)."""


def _resumed_agent(out: Path | None) -> str | None:
    """The agent env of the run in ``out`` registered again (``None``: not an agent run)."""
    path = Path(out) / AGENT_FILE if out is not None else None
    if path is None or not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8"))
    return _agent_env([spec["agent"]], Path(spec["tasks"]), spec.get("reward"))


def _resumed_env(run_info: dict[str, Any]) -> Any:
    """The env of the run being resumed: its id, or the mixture run.json recorded."""
    if not run_info.get("envs"):
        return run_info.get("env")
    from envkit.trainers.mixture import EnvMixture

    try:
        return EnvMixture(
            [(e["env"], e["weight"], e.get("kwargs") or {}) for e in run_info["envs"]]
        )
    except (ValueError, KeyError, TypeError) as e:
        raise _fail(
            f"cannot rebuild the run's env mixture from run.json ({e}); resume it from Python "
            "with GRPOTrainer(..., env=EnvMixture(...)).train(resume=True)"
        ) from None


def _check_resume(
    out: Path | None, env_id: list[str] | None, model: str | None, reconfigures: bool
) -> dict[str, Any]:
    """Step 1 of ``--resume``: the run in ``--out`` exists and the command agrees with it."""
    from envkit.trainers.run_dir import RunDir

    if out is None:
        raise _fail("--resume needs --out RUN_DIR (the run to continue)")
    run = RunDir(out)
    if not run.exists():
        raise _fail(f"{out} holds no run to resume (no config.yaml); drop --resume to start one")
    run_info = run.read_run_info()
    if env_id:
        trained = [e["env"] for e in run_info.get("envs") or []] or [run_info.get("env")]
        given = [_full(text.rpartition(":")[0] if _weighted(text) else text) for text in env_id]
        if sorted(given) != sorted(trained):
            raise _fail(f"{out} trains {run_info.get('env')}, not {' '.join(given)}")
    if model is not None and model != run_info.get("model"):
        raise _fail(f"{out} trains --model {run_info.get('model')}, not {model}")
    if reconfigures:
        raise _fail(
            "--resume continues the run as configured: drop --kwarg/--reward/--judge/--config"
        )
    return run_info


def _weighted(text: str) -> bool:
    from envkit.trainers.mixture import parse_env_weight

    try:
        return parse_env_weight(text)[1] is not None
    except ValueError:
        return True


def _prepare_new_run(
    env_id: list[str] | None, model: str | None, out: Path | None, overwrite: bool
) -> None:
    """Step 1 of a new run: ENV_ID and --model are given; --out is free (or --overwrite)."""
    from envkit.trainers.run_dir import RunDir

    if not env_id or model is None:
        raise _fail("give ENV_ID and --model (or --resume --out RUN_DIR)")
    if out is not None and RunDir(out).exists():
        if not overwrite:
            raise _fail(
                f"{out} already holds a run; add --resume to continue it, --overwrite to replace "
                "it, or choose another --out"
            )
        import shutil

        shutil.rmtree(out)


def _build_trainer(model_spec: Any, env: Any, reward: Any, cfg: Any, console: Console) -> Any:
    """Step 2: load the model on its device and build the trainer (errors exit with code 2)."""
    from envkit.trainers import GRPOTrainer

    with console.status(f"loading {model_spec} ..."):
        try:
            trainer = GRPOTrainer(model_spec, env, reward=reward, config=cfg)
        except (ValueError, RuntimeError, TypeError) as e:
            raise _fail(str(e)) from None
    runtime = trainer.runtime
    from envkit.trainers.mixture import EnvMixture

    shown = env.describe() if isinstance(env, EnvMixture) else env
    console.print(
        f"training [bold]{shown}[/bold] with {model_spec} on {runtime['device']} "
        f"({runtime['dtype']}): {cfg.max_steps} steps x {cfg.groups_per_step} tasks x "
        f"{cfg.group_size} episodes -> {trainer.run.path}"
    )
    return trainer


def _run_training(trainer: Any, resume: bool, console: Console) -> None:
    """Step 3: train (closing the trainer whatever happens), then print the run's summary."""
    from envkit.trainers.report import print_summary

    try:
        result = trainer.train(resume=resume)
    except FileExistsError as e:
        raise _fail(str(e)) from None
    finally:
        trainer.close()
    print_summary(result.run_dir, console)
    console.print(f"adapter: {result.adapter_dir}  reward curve: {trainer.run.plot_path}")


def _full(env_id: str) -> str:
    from envkit.registration import full_id

    return full_id(env_id)


def _resolve_env(env_id: str) -> str:
    import gymnasium as gym

    from envkit.registration import spec as envkit_spec

    fid = _full(env_id)
    try:
        envkit_spec(fid)
    except gym.error.Error as e:
        raise _fail(
            f"{e}\nRun `envkit list` to see the registered environments; an env registered in "
            "a module of yours needs --import MODULE (or --import path/to/file.py)."
        ) from None
    return fid


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by envkit train.")],
    plot: Annotated[bool, typer.Option(help="Redraw reward_curve.png.")] = True,
) -> None:
    """Print a run's summary (reward before/after, entropy, diversity, timing) and redraw plots."""
    from envkit.trainers.report import plot_run, print_summary
    from envkit.trainers.run_dir import RunDir

    run = RunDir(run_dir)
    if not run.metrics_path.is_file():
        raise _fail(f"{run_dir} is not an envkit run folder (no metrics.jsonl)")
    console = Console()
    print_summary(run_dir, console)
    if plot:
        path = plot_run(run_dir)
        console.print(f"reward curve: {path}")


app = typer.Typer(add_completion=False, no_args_is_help=True)
app.command("train")(train_command)
app.command("report")(report_command)
