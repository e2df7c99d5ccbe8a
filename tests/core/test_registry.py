"""The envkit namespace in gymnasium's registry, and third-party plug-ins via entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from core_support import EchoEnv, run_python

import envkit
from envkit.registration import BUNDLED, full_id

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugin_pkg"


# ------------------------------------------------------------------ register / make
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Maze-v0", "envkit/Maze-v0"),
        ("envkit/Maze-v1", "envkit/Maze-v1"),
        ("acme/Maze-v0", "acme/Maze-v0"),
    ],
)
def test_register_namespaces(clean_registry: None, given: str, expected: str) -> None:
    assert envkit.register(given, entry_point=EchoEnv) == expected
    assert expected in gym.registry
    assert isinstance(gym.make(expected).unwrapped, EchoEnv)


@pytest.mark.parametrize("bad", ["Maze", "envkit/Maze", "acme/Maze", "Multi-view", "Maze-vx"])
def test_register_requires_a_version(clean_registry: None, bad: str) -> None:
    with pytest.raises(gym.error.Error, match=r"has no version.*-v0"):
        envkit.register(bad, entry_point=EchoEnv)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_full_id_rejects_non_strings(bad: Any) -> None:
    with pytest.raises(TypeError, match="non-empty string"):
        full_id(bad)


def test_duplicate_registration(clean_registry: None) -> None:
    envkit.register("Dup-v0", entry_point=EchoEnv, kwargs={"max_turns": 2})
    # The very same registration again (a module imported twice) is harmless.
    assert (
        envkit.register("Dup-v0", entry_point=EchoEnv, kwargs={"max_turns": 2}) == "envkit/Dup-v0"
    )
    with pytest.raises(gym.error.Error, match=r"already registered.*override=True"):
        envkit.register("Dup-v0", entry_point="somewhere.else:Env")
    with pytest.raises(gym.error.Error, match="already registered"):
        envkit.register("Dup-v0", entry_point=EchoEnv, kwargs={"max_turns": 5})
    assert gym.spec("envkit/Dup-v0").kwargs == {"max_turns": 2}


def test_override_replaces_the_registration(clean_registry: None) -> None:
    envkit.register("Over-v0", entry_point=EchoEnv, kwargs={"max_turns": 2})
    envkit.register("Over-v0", entry_point=EchoEnv, kwargs={"max_turns": 7}, override=True)
    assert envkit.make("Over-v0").unwrapped.max_turns == 7


def test_spec_kwargs_pass_through(clean_registry: None) -> None:
    envkit.register("Spec-v0", entry_point=EchoEnv, max_episode_steps=1)
    env = envkit.make("Spec-v0", max_turns=5)
    env.reset(seed=0)
    assert env.step("wrong")[3] is True, "TimeLimit(max_episode_steps=1) must truncate"


@pytest.mark.parametrize(
    "maker",
    [lambda i, **kw: envkit.make(i, **kw), lambda i, **kw: gym.make(full_id(i), **kw)],
    ids=["envkit.make", "gymnasium.make"],
)
def test_make_kwargs_pass_through(maker: Any) -> None:
    env = maker("Arithmetic-v0", operators="*", min_operand=3, max_operand=3, max_turns=4)
    assert env.spec.id == "envkit/Arithmetic-v0"
    obs, _ = env.reset(seed=0)
    inner = env.unwrapped
    assert inner.max_turns == 4 and obs[-1]["content"].startswith("What is 3 * 3?")
    assert env.step("9")[1:3] == (1.0, True)


def test_make_accepts_a_spec_and_make_chat_env_unwraps() -> None:
    env = envkit.make(envkit.spec("Arithmetic-v0"))
    assert env.spec.id == "envkit/Arithmetic-v0"
    chat = envkit.make_chat_env("Arithmetic-v0", max_turns=2)
    assert isinstance(chat, envkit.ChatEnv) and chat.max_turns == 2


@pytest.fixture
def cartpole_in_a_namespace(clean_registry: None) -> None:
    gym.register("gymnasium/CartPole-v1", entry_point=gym.spec("CartPole-v1").entry_point)


@pytest.mark.usefixtures("cartpole_in_a_namespace")
def test_make_chat_env_rejects_other_envs() -> None:
    with pytest.raises(TypeError, match=r"is a CartPoleEnv, not an envkit\.ChatEnv"):
        envkit.make_chat_env("gymnasium/CartPole-v1")


@pytest.mark.parametrize(
    ("bad", "error", "needle"),
    [
        ("Arithmetc-v0", gym.error.NameNotFound, "Did you mean: `Arithmetic`"),
        ("arithmetic-v0", gym.error.NameNotFound, "Did you mean: `Arithmetic`"),
        ("Arithmetic-v7", gym.error.VersionNotFound, "`v0`"),
        ("envkitt/Arithmetic-v0", gym.error.NamespaceNotFound, "Did you mean: `envkit`"),
    ],
)
@pytest.mark.parametrize("how", ["make", "spec"])
def test_unknown_ids_get_suggestions(
    bad: str, error: type[Exception], needle: str, how: str
) -> None:
    with pytest.raises(error, match=needle):
        envkit.make(bad) if how == "make" else envkit.spec(bad)


def test_registered_ids(clean_registry: None) -> None:
    ids = envkit.registered_ids()
    assert ids == sorted(ids)
    assert all(i.startswith("envkit/") for i in ids)
    assert {full_id(i) for i in BUNDLED} <= set(ids)
    envkit.register("Zeta-v0", entry_point=EchoEnv)
    assert "envkit/Zeta-v0" in envkit.registered_ids()
    everything = envkit.registered_ids(None)
    assert "CartPole-v1" in everything and "envkit/Zeta-v0" in everything


def test_bundled_envs_are_registered_by_string() -> None:
    for env_id, (entry_point, kwargs) in BUNDLED.items():
        spec = gym.spec(full_id(env_id))
        assert spec.entry_point == entry_point and isinstance(entry_point, str)
        assert entry_point.startswith("envkit.environments.")
        assert spec.kwargs == kwargs


# ------------------------------------------------------------------ import side effects
def test_import_envkit_imports_no_env_module_and_no_heavy_dependency(tmp_path: Path) -> None:
    out = run_python(
        """
        import json, sys
        import envkit
        ids = envkit.registered_ids()
        print(json.dumps({
            "ids": ids,
            "env_modules": sorted(m for m in sys.modules if m.startswith("envkit.environments")),
            "heavy": sorted(m for m in ("torch", "litellm", "docker", "transformers", "trl",
                                        "peft", "openai", "httpx") if m in sys.modules),
        }))
        """,
        cwd=tmp_path,
    )
    assert {full_id(i) for i in BUNDLED} <= set(out["ids"])
    assert out["env_modules"] == []
    assert out["heavy"] == []


# ------------------------------------------------------------------ entry-point plug-ins
@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/plugin_pkg`` really installed (pip, from a copy) into a temporary directory."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(
        PLUGIN_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert any(site.glob("envkit_plugin_demo-*.dist-info/entry_points.txt"))
    return site


def test_plugin_registers_without_being_imported(plugin_site: Path, tmp_path: Path) -> None:
    out = run_python(
        """
        import json, sys
        import envkit, gymnasium as gym
        registered = "envkit/PluginEcho-v0" in envkit.registered_ids()
        imported_at_import = "envkit_plugin_demo.echo" in sys.modules
        entry_point = gym.spec("envkit/PluginEcho-v0").entry_point
        env = envkit.make("PluginEcho-v0", prefix="Repeat")
        obs, info = env.reset(seed=1)
        word = obs[-1]["content"].split()[-1]
        _, reward, terminated, truncated, _ = env.step(word)
        also = gym.make("envkit/PluginEcho-v0").unwrapped
        print(json.dumps({
            "registered": registered,
            "imported_at_import": imported_at_import,
            "entry_point": entry_point,
            "prompt": obs[-1]["content"],
            "step": [reward, terminated, truncated],
            "cls": type(also).__module__ + "." + type(also).__name__,
            "loaded_again": envkit.load_plugins(),
        }))
        """,
        cwd=tmp_path,
        pythonpath=[plugin_site],
    )
    assert out["registered"] is True
    assert out["imported_at_import"] is False
    assert out["entry_point"] == "envkit_plugin_demo.echo:EchoEnv"
    assert out["prompt"].startswith("Repeat ")
    assert out["step"] == [1.0, True, False]
    assert out["cls"] == "envkit_plugin_demo.echo.EchoEnv"
    assert out["loaded_again"] == [], "load_plugins is idempotent"


def test_plugin_env_passes_envkit_check(plugin_site: Path, tmp_path: Path) -> None:
    out = run_python(
        """
        import json
        from envkit.checks import run_checks
        print(json.dumps([[r.name, r.passed, r.detail] for r in run_checks("PluginEcho-v0")]))
        """,
        cwd=tmp_path,
        pythonpath=[plugin_site],
    )
    assert [(name, detail) for name, passed, detail in out if not passed] == []
    assert len(out) >= 7


def test_a_broken_plugin_does_not_break_import(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[envkit.environments]\nNoVersion = broken_plugin:Env\nGood-v0 = broken_plugin:Env\n"
    )
    out = run_python(
        """
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import envkit
        print(json.dumps({
            "ids": envkit.registered_ids(),
            "warnings": [str(w.message) for w in caught if "envkit" in str(w.message)],
        }))
        """,
        cwd=tmp_path,
        pythonpath=[site],
    )
    assert "envkit/Arithmetic-v0" in out["ids"]
    assert "envkit/Good-v0" in out["ids"]
    assert len(out["warnings"]) == 1
    assert "'NoVersion'" in out["warnings"][0] and "has no version" in out["warnings"][0]
