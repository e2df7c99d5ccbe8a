"""What the gateway records: one ``CallRecord`` per model call, appended to a session's log.

Every call an agent makes through the gateway (``/v1/chat/completions`` or ``/v1/responses``,
streamed or not) becomes a ``CallRecord``: the conversation as the client sent it, the prompt token
ids the upstream rendered, the token ids it sampled with their log-probabilities, the assistant
message answered (tool calls parsed), the finish reason, timing, and the error when the call
failed. ``SessionLog`` appends each record to ``<dir>/<session>.jsonl`` and flushes it before the
client gets its answer, so a crash mid-rollout keeps every call made so far.

Example:
    >>> import tempfile
    >>> from envkit.types import Message
    >>> log = SessionLog(tempfile.mkdtemp(), "s1")
    >>> rec = CallRecord(session="s1", index=0, api="chat.completions",
    ...                  messages=[Message(role="user", content="hi")],
    ...                  prompt_token_ids=[1, 2], token_ids=[3, 0], logprobs=[-0.5, -0.1],
    ...                  message=Message(role="assistant", content="yo"), finish_reason="stop")
    >>> log.append(rec)
    >>> [r.token_ids for r in read_session(log.path)]
    [[3, 0]]
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from envkit.types import Message

__all__ = ["CallRecord", "SessionLog", "read_session"]

Api = Literal["chat.completions", "responses"]


class CallRecord(BaseModel):
    """One model call made through the gateway, as it happened.

    Attributes:
        session: The session id (the ``/s/<session>/v1`` part of the client's base URL).
        index: The call's position among the session's calls, from 0, in arrival order.
        api: ``"chat.completions"`` or ``"responses"``.
        stream: Whether the client asked for a streamed answer.
        model: The model name the client sent.
        messages: The conversation the client sent, as chat messages (a Responses API ``input``
            is converted to the same form).
        tools: The function-tool schemas offered, in chat-completions form.
        prompt_token_ids: The prompt as the upstream rendered it (``None``: it reports no ids).
        token_ids: The sampled token ids (``None``: the upstream reports none).
        logprobs: The sampled tokens' log-probabilities, one per token id.
        message: The assistant message answered (``None`` when the call failed).
        finish_reason: ``stop``, ``length`` or ``tool_calls`` (``None`` when the call failed).
        started: Wall-clock time (``time.time()``) the request arrived.
        duration_s: Seconds until the answer was complete.
        status: The HTTP status answered to the client.
        error: What went wrong, for a failed call (``None`` otherwise).
        adapter: The LoRA adapter that sampled the call (``None``: the base model).
    """

    model_config = ConfigDict(extra="forbid")

    session: str
    index: int = Field(ge=0)
    api: Api
    stream: bool = False
    model: str | None = None
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    message: Message | None = None
    finish_reason: str | None = None
    started: float = Field(default_factory=time.time)
    duration_s: float = 0.0
    status: int = 200
    error: str | None = None
    adapter: str | None = None

    @model_validator(mode="after")
    def _check(self) -> CallRecord:
        if (
            self.logprobs is not None
            and self.token_ids is not None
            and len(self.logprobs) != len(self.token_ids)
        ):
            raise ValueError(
                f"logprobs ({len(self.logprobs)}) and token_ids ({len(self.token_ids)}) must "
                "have the same length"
            )
        return self

    @property
    def ok(self) -> bool:
        """True when the call was answered (no error)."""
        return self.error is None and self.message is not None

    @property
    def has_token_ids(self) -> bool:
        """True when the record can be trained on: prompt and sampled token ids are known."""
        return self.prompt_token_ids is not None and self.token_ids is not None


class SessionLog:
    """Appends a session's ``CallRecord`` lines to ``<directory>/<session>.jsonl``.

    The file is created here, empty, by whoever opens the session: creating a file can take a
    millisecond or more (1.3 ms on the development machine's disk), which would otherwise block
    the gateway's event loop, and every session on it, at each session's first call. Each
    ``append`` writes one JSON line and flushes it to the OS before returning. Safe to call from
    several threads.

    Args:
        directory: Where the session's file goes (created when missing).
        session: The session id (a file-name-safe string).
    """

    def __init__(self, directory: str | Path, session: str) -> None:
        if not session or "/" in session or session in (".", ".."):
            raise ValueError(f"session id {session!r} is not usable as a file name")
        self.path = Path(directory) / f"{session}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._lock = threading.Lock()

    def append(self, record: CallRecord) -> None:
        """Writes ``record`` as one line and flushes it."""
        line = record.model_dump_json() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()


def read_session(path: str | Path) -> list[CallRecord]:
    """The records of a session file, in the order written; a torn last line is skipped.

    A process killed while writing can leave a partial last line: it is dropped, every
    complete record before it is kept.
    """
    records: list[CallRecord] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(CallRecord.model_validate(json.loads(line)))
        except ValueError:
            if n == len(lines) - 1:
                break  # torn last line
            raise
    return records
