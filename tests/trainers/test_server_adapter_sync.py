"""Server-mode adapter sync (``EpisodeSource._publish`` / ``_push_adapter``) against a vLLM-like
HTTP server on 127.0.0.1, with a real tiny peft model: one process saves and loads each version,
the others wait for it; old versions are unloaded and no temporary folder is left behind."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from fake_vllm import FakeVLLM

from envkit.policies import ServerPolicy
from envkit.trainers import GRPOConfig
from envkit.trainers.episodes import BackgroundLoop, EpisodeSource


@pytest.fixture(scope="module")
def peft_model() -> Any:
    from peft import LoraConfig, get_peft_model

    from envkit.models import load_model

    base, _ = load_model("tiny-random")
    return get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))


def source(url: str, world: int) -> EpisodeSource:
    loop = BackgroundLoop()
    src = EpisodeSource(
        "Arithmetic-v0",
        GRPOConfig(progress=False, policy_server=url, policy_server_model="base"),
        make_policy=lambda model: None,
        reward=None,
        stop_token_ids=[0],
        run_dir=None,
        loop=loop,
    )
    src.server_policy = ServerPolicy(url, "base", max_retries=0)
    src._world = world
    return src


def test_no_temp_folder_leaks_and_old_versions_are_unloaded(
    peft_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes folders
    with FakeVLLM() as server:
        src = source(server.url, world=1)
        for version in range(5):
            src._publish(peft_model, version)
            src._push_adapter(src._snapshot[1]["path"], version, rank=0)  # type: ignore[index]
            folders = list(tmp_path.iterdir())
            assert len(folders) == 1, f"a temp folder per step: {folders}"
            assert len(list(folders[0].glob("v*"))) <= 2
        assert server.adapters == [src._adapter_name(4)]  # the older ones were unloaded
        assert len(server.loads) == 5
        src.close()
        src.loop.close()
    assert list(tmp_path.iterdir()) == [], "the adapter folder outlived the run"


def test_only_the_main_process_loads_each_version_the_others_wait(
    peft_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with FakeVLLM() as server:
        main, other = source(server.url, world=2), source(server.url, world=2)
        for version in range(3):
            main._publish(peft_model, version, rank=0)
            other._publish(peft_model, version, rank=1)
            waiting = threading.Thread(
                target=other._push_adapter,
                args=(other._snapshot[1]["path"], version, 1),  # type: ignore[index]
            )
            waiting.start()
            waiting.join(timeout=1.0)
            assert waiting.is_alive(), "rank 1 went on before rank 0 loaded the adapter"
            main._push_adapter(main._snapshot[1]["path"], version, rank=0)  # type: ignore[index]
            waiting.join(timeout=30)
            assert not waiting.is_alive()
            assert other.server_policy.active_adapter == main.server_policy.active_adapter
        names = [main._adapter_name(v) for v in range(3)]
        assert server.loads == names, "each version is loaded once, by the main process"
        assert server.adapters == names[1:]  # the one before stays: rank 1 may still use it
        saved = [p for p in tmp_path.iterdir() if any(p.iterdir())]
        assert len(saved) == 1, "only the main process saves the adapter"
        for src in (main, other):
            src.close()
            src.loop.close()
    assert list(tmp_path.iterdir()) == []
