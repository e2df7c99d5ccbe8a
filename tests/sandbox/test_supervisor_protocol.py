"""The host never trusts what the in-sandbox supervisor says.

A subverted supervisor (or bytes forged into its stream) is simulated by a backend whose
transport returns chosen bytes: malformed or mismatched replies become a model-visible error and
a sandbox the pool replaces, never a bare ``KeyError`` or an ``InfraError``. No Docker needed.
"""

from __future__ import annotations

from typing import Any

import pytest

from envkit.sandbox import SandboxConfig, SandboxFileError
from envkit.sandbox.supervised import RawReply, SupervisedSandbox


class ScriptedSandbox(SupervisedSandbox):
    """A backend whose "supervisor" answers with the scripted replies, in order."""

    kind = "scripted"

    def __init__(self, replies: list[Any], config: SandboxConfig | None = None) -> None:
        super().__init__(config)
        self.replies = list(replies)
        self.deadlines: list[float] = []
        self.specs: list[dict[str, Any]] = []

    def _transport(self, spec: dict[str, Any], payload: Any, *, deadline: float, max_reply: int):
        self.specs.append(spec)
        self.deadlines.append(deadline)
        reply = self.replies.pop(0)
        if callable(reply):
            reply = reply(spec)
        return RawReply(reply, b"", 0)

    def _destroy(self) -> None:
        pass

    def alive(self) -> bool:
        return True


def _echo_rid(body: bytes) -> Any:
    return lambda spec: body.replace(
        b"ENVKIT1\n", b"ENVKIT1\nrid=x%s\n" % spec["rid"].encode().hex().encode(), 1
    )


GOOD_RUN = b"ENVKIT1\nexit_code=0\nok=1\nout_len=5\nerr_len=0\n\nreal\n"


@pytest.mark.parametrize(
    "reply",
    [
        b"ENVKIT1\nok=1\nout_len=0\nerr_len=0\n\n",  # a put reply where a run reply was expected
        b"ENVKIT1\nexit_code=x41\nok=1\nout_len=0\nerr_len=0\n\n",  # exit code is not a number
        GOOD_RUN,  # no request id: forged before the request was known
        GOOD_RUN.replace(b"ENVKIT1\n", b"ENVKIT1\nrid=x6666\n"),  # someone else's request id
    ],
    ids=["missing-exit-code", "text-exit-code", "no-id", "wrong-id"],
)
def test_bad_run_replies_are_model_visible_errors(reply: bytes) -> None:
    sb = ScriptedSandbox([reply])
    r = sb.exec("echo real")  # never KeyError / ValueError / InfraError
    assert r.exit_code != 0 and "supervisor" in r.stderr and "real" not in r.stdout, r
    assert sb.broken is None  # the episode goes on ...
    assert sb.reset() is False  # ... but the pool will not hand this sandbox out again


def test_matching_reply_is_accepted() -> None:
    sb = ScriptedSandbox([_echo_rid(GOOD_RUN)])
    r = sb.exec("echo real")
    assert r.stdout == "real\n" and r.exit_code == 0
    assert isinstance(sb.specs[0]["rid"], str) and len(sb.specs[0]["rid"]) >= 16


def test_bad_file_replies_raise_sandbox_file_error() -> None:
    sb = ScriptedSandbox(
        [
            b"ENVKIT1\nok=1\nout_len=0\nerr_len=0\n\n",
            _echo_rid(b"ENVKIT1\nout_len=0\nerr_len=0\n\n"),
        ]
    )
    with pytest.raises(SandboxFileError):
        sb.read_file("x")
    with pytest.raises(SandboxFileError):
        sb.write_files({"a": "b"})


def test_file_op_deadline_follows_the_timeout() -> None:
    cfg = SandboxConfig(timeout=2.0, kill_grace=1.0)
    ok_get = _echo_rid(b"ENVKIT1\nok=1\nout_len=2\nerr_len=0\n\nhi")
    sb = ScriptedSandbox([ok_get, ok_get], cfg)
    assert sb.read_file("x") == b"hi"
    assert sb.read_file("x", timeout=0.5) == b"hi"
    assert sb.deadlines == [3.0, 1.5]  # timeout + kill_grace: no 30 s floor
