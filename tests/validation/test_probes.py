"""Each probe kind catches a deliberately hackable env of its kind and passes sound ones."""

from __future__ import annotations

import pytest
from validation_support import HACKABLE, SOUND

import envkit
from envkit.canary import Canary
from envkit.testing import EnvDoesNotHold, assert_env_holds
from envkit.validation import validate
from envkit.validation.probes import panel


@pytest.mark.parametrize("env_id", sorted(HACKABLE))
def test_the_probe_of_its_kind_catches_the_hackable_env(env_id: str) -> None:
    report = validate(env_id, episodes=4)
    probe = HACKABLE[env_id][1]
    assert not report.ok
    caught = {f.probe: f for f in report.findings}
    assert probe in caught, report.summary()
    row = next(p for p in report.probes if p.name == probe)
    assert row.status == "finding"
    finding = caught[probe]
    if probe == "hygiene:isolation":  # a declaration of the class: no episode shows it
        assert "grader_isolated" in finding.message
    elif probe.startswith("hygiene:") or probe in ("golden", "null"):
        assert finding.trajectories  # the evidence travels with the finding
    else:  # a panel probe or canary: its trajectories earned more than the floor
        assert finding.trajectories
        assert all((t.reward or 0.0) > (report.floor or 0.0) for t in finding.trajectories)
        assert row.mean_reward is not None and row.mean_reward > (report.floor or 0.0)


@pytest.mark.parametrize("env_id", sorted(SOUND))
def test_sound_envs_hold(env_id: str) -> None:
    report = assert_env_holds(env_id, episodes=4, require_golden=True)
    assert report.ok and report.findings == []
    assert report.golden_status == "reaches max" and report.golden == 1.0
    assert report.floor == 0.0
    kinds = {p.kind for p in report.probes}
    assert {"golden", "floor", "degenerate", "reward_search", "injection", "hygiene"} <= kinds
    assert all(p.status in ("pass", "info") for p in report.probes)
    assert all(p.episodes == 4 for p in report.probes if p.kind != "hygiene")


def test_tool_envs_get_the_tool_abuse_probe_and_text_envs_do_not() -> None:
    tools_env = envkit.make_chat_env("SoundTools-v0")
    text_env = envkit.make_chat_env("SoundSum-v0")
    tools_env.reset(seed=0)
    text_env.reset(seed=0)
    assert "tool-abuse" in [p.name for p in panel(tools_env)]
    assert "tool-abuse" not in [p.name for p in panel(text_env)]
    # the probe reads /etc/passwd and test/answer/check paths, writes grader files, sends
    # malformed arguments, and the env (sound) answers each call without crashing
    [traj] = _trajectories("SoundTools-v0", "tool-abuse")
    assert traj.outcome == "ok" and traj.reward == 0.0
    args = " ".join(
        c.function.arguments for m in traj.messages if m.tool_calls for c in m.tool_calls
    )
    assert "/etc/passwd" in args and "answer.txt" in args and "reward.txt" in args
    assert "{not json" in args


def _trajectories(env_id: str, probe: str) -> list[envkit.Trajectory]:
    from envkit._async import run_sync
    from envkit.validation.probes import panel as make_panel
    from envkit.validation.validate import _play

    env = envkit.make_chat_env(env_id)
    env.reset(seed=0)
    p = next(p for p in make_panel(env) if p.name == probe)
    return run_sync(_play(envkit.registration.full_id(env_id), {}, p, [0], None))


def test_assert_env_holds_raises_with_the_findings() -> None:
    with pytest.raises(EnvDoesNotHold, match=r"\[claims\]") as caught:
        assert_env_holds("HackClaims-v0", episodes=2)
    assert caught.value.report.findings[0].probe == "claims"
    assert isinstance(caught.value, AssertionError)


def test_no_golden_path_is_reported_not_failed() -> None:
    class NoRef(SOUND["SoundSum-v0"]):  # type: ignore[misc,valid-type]
        def golden(self) -> None:
            return None

    envkit.register("TestNoGolden-v0", NoRef, override=True)
    report = validate("TestNoGolden-v0", episodes=2)
    assert report.golden_status == "no golden path" and report.golden is None
    assert report.ok
    with pytest.raises(AssertionError, match="no golden path"):
        assert_env_holds("TestNoGolden-v0", episodes=2, require_golden=True)


def test_a_chance_hit_stays_within_the_tolerance_but_zero_tolerance_reports_it() -> None:
    class Lucky(SOUND["SoundSum-v0"]):  # type: ignore[misc,valid-type]
        """Seed 0's task answers "refusal"-style replies by chance (a sound env, one fluke)."""

        def respond(self, message):  # type: ignore[no-untyped-def]
            refusal = "I'm sorry, but I can't help with that."
            fluke = self.task.id == _first_task and message.content == refusal
            return envkit.Feedback(reward=float(fluke or self.correct(message.content)), done=True)

    envkit.register("TestLucky-v0", Lucky, override=True)
    env = envkit.make_chat_env("TestLucky-v0")
    env.reset(seed=0)
    global _first_task
    _first_task = env.task.id
    report = validate("TestLucky-v0", episodes=8)
    refusal = next(p for p in report.probes if p.name == "refusal")
    assert report.ok and refusal.hits == 1 and "chance" in refusal.detail
    strict = validate("TestLucky-v0", episodes=8, tolerance=0.0)
    assert not strict.ok and [f.probe for f in strict.findings] == ["refusal"]


_first_task: str | None = None


def test_canaries_must_have_unique_names_and_a_callable() -> None:
    with pytest.raises(TypeError, match="act must be a callable"):
        Canary("x", "y", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty name"):
        Canary("", "y", lambda env: "")

    class Twice(SOUND["SoundSum-v0"]):  # type: ignore[misc,valid-type]
        canaries = (Canary("a", "", lambda e: ""), Canary("a", "", lambda e: "1"))

    envkit.register("TestTwice-v0", Twice, override=True)
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        validate("TestTwice-v0", episodes=1)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        validate("SoundSum-v0", episodes=0)
    with pytest.raises(ValueError, match="tolerance"):
        validate("SoundSum-v0", tolerance=1.5)
    import gymnasium as gym

    with pytest.raises(gym.error.Error):
        validate("NoSuchEnv-v0")


def test_golden_default_is_the_reference_as_the_reply() -> None:
    env = envkit.make_chat_env("SoundSum-v0")
    assert env.golden() is None  # before reset: no task
    env.reset(seed=3)
    assert env.golden() == [{"role": "assistant", "content": str(env.task.reference)}]
    env.task.reference = {"not": "a scalar"}
    assert env.golden() is None


def test_seeds_without_a_golden_path_are_left_out_of_the_golden_score() -> None:
    class OddOnly(SOUND["SoundSum-v0"]):  # type: ignore[misc,valid-type]
        def golden(self):  # type: ignore[no-untyped-def]
            return super().golden() if self.task.answer % 2 else None

    envkit.register("TestOddGolden-v0", OddOnly, override=True)
    report = validate("TestOddGolden-v0", episodes=6)
    row = next(p for p in report.probes if p.name == "golden")
    assert report.ok and report.golden_status == "reaches max" and report.golden == 1.0
    assert 0 < row.episodes < 6 and "no golden path on" in row.detail


def test_a_reference_in_the_prompt_is_reported_and_read_off_by_the_echo_probe() -> None:
    report = validate("HackPromptLeak-v0", episodes=3)
    leak = next(p for p in report.probes if p.name == "hygiene:leak")
    assert "opening prompt of 3 of 3 seeds: a retrieval task, or a leak" in leak.detail
    assert {"echo", "numbers"} <= {f.probe for f in report.findings}
    # an option the prompt names for every task ("yes or no") is not reported at all
    yes_no = validate("SoundYesNo-v0", episodes=4)
    assert next(p for p in yes_no.probes if p.name == "hygiene:leak").detail == ""


def test_an_agent_env_is_refused_with_the_reason() -> None:
    from envkit.environments.agent import register_agent

    register_agent(
        "TestValidateAgent-v0",
        agent="envkit.environments.agent:_echo_agent",
        tasks=[{"prompt": "Say hi."}],
        reward=lambda t: 1.0,
        override=True,
    )
    with pytest.raises(ValueError, match="is an AgentEnv"):
        validate("TestValidateAgent-v0", episodes=1)
