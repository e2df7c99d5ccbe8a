"""``SupervisedSandbox``: the part of every backend that talks to the in-sandbox supervisor.

A backend only has to move bytes: ``_transport`` starts the supervisor inside the sandbox, feeds
it a request on stdin and returns what it wrote. Everything else (timeouts, output caps, the
process-tree kill, file transfer, scrubbing between episodes, the hard deadline) is here, once.
"""

from __future__ import annotations

import abc
import marshal
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from envkit.sandbox.base import Command, run_blocking
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.errors import SandboxClosedError, SandboxDiedError, SandboxError
from envkit.sandbox.result import ExecResult

__all__ = ["DeadlineExceeded", "RawReply", "SandboxFileError", "SupervisedSandbox"]

SCRUB_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


class SandboxFileError(OSError):
    """A file could not be written or read inside a live sandbox (the message says why)."""


class DeadlineExceeded(Exception):
    """The transport gave up: the supervisor did not answer before the hard deadline."""


@dataclass
class RawReply:
    """What the supervisor process wrote and how it ended."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    overflow: bool = False


@cache
def supervisor_source() -> str:
    """The source of the in-sandbox supervisor (``_supervisor.py``)."""
    return (Path(__file__).parent / "_supervisor.py").read_text(encoding="utf-8")


_MAX_HEADER = 4096


def parse_reply(data: bytes) -> dict[str, Any] | None:
    """Parses the supervisor's reply (see ``_supervisor.py``); ``None`` if it is malformed.

    The reply is untrusted (it comes from inside the sandbox): only known shapes are accepted.
    Numbers become int/float, ``x``-prefixed values hex-decoded text, and the raw ``stdout`` and
    ``stderr`` bytes follow the header.
    """
    end = data.find(b"\n\n", 0, _MAX_HEADER)
    if not data.startswith(b"ENVKIT1\n") or end < 0:
        return None
    reply: dict[str, Any] = {}
    try:
        for line in data[8:end].split(b"\n"):
            key, _, value = line.decode("ascii").partition("=")
            if value.startswith("x"):
                reply[key] = bytes.fromhex(value[1:]).decode("utf-8", "replace")
            elif value.lstrip("-").isdigit():
                reply[key] = int(value)
            else:
                reply[key] = float(value)
        out_len, err_len = int(reply.pop("out_len")), int(reply.pop("err_len"))
    except (ValueError, KeyError, UnicodeDecodeError):
        return None
    body = data[end + 2 :]
    if out_len < 0 or err_len < 0 or len(body) != out_len + err_len:
        return None
    reply["stdout"] = body[:out_len]
    reply["stderr"] = body[out_len:]
    return reply


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class SupervisedSandbox(abc.ABC):
    """Base class of the backends; implements the ``Sandbox`` protocol on top of ``_transport``.

    Attributes:
        config: The sandbox's ``SandboxConfig``.
        uses: How many times a pool handed this sandbox out.
        created_at: ``time.monotonic()`` when it was created.
    """

    kind: str = "abstract"

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.uses = 0
        self.created_at = time.monotonic()
        self._closed = False
        self._broken: str | None = None
        self._close_lock = threading.Lock()

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _transport(
        self, spec: dict[str, Any], payload: bytes, *, deadline: float, max_reply: int
    ) -> RawReply:
        """Has the supervisor run ``spec`` with ``payload`` as its input; raises
        ``DeadlineExceeded`` when no reply came within ``deadline`` seconds."""

    @abc.abstractmethod
    def _destroy(self) -> None:
        """Frees the backend's resources (remove the container, delete the directory)."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """True while the sandbox can run commands (its container runs...)."""

    def _confirm_alive(self) -> bool:
        """After a request got no reply: is the sandbox still alive (so the command, not the
        infrastructure, is to blame)? Backends may look harder than ``alive()``."""
        return self.alive()

    def _hard_kill(self) -> None:
        """Last resort when the supervisor cannot stop a command: end the whole sandbox."""
        self._destroy()

    def _died(self, doing: str) -> SandboxError:
        return SandboxDiedError(f"The {self.kind} sandbox {self.name} died while {doing}.")

    @property
    def name(self) -> str:
        """A short human-readable identifier."""
        return f"{self.kind}-{id(self):x}"

    # ------------------------------------------------------------------ state
    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    @property
    def broken(self) -> str | None:
        """Why the sandbox is unusable, or ``None`` while it is healthy."""
        return self._broken

    def mark_broken(self, reason: str) -> None:
        """Records that the sandbox must not be reused (a pool then replaces it)."""
        if self._broken is None:
            self._broken = reason

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError(
                f"The sandbox {self.name} is closed; acquire a new one (pool.acquire()) or create "
                "a new sandbox."
            )

    # ------------------------------------------------------------------ supervisor calls
    @staticmethod
    def _request(spec: dict[str, Any], payload: bytes = b"") -> bytes:
        """A one-shot supervisor's stdin: 4-byte length, marshalled spec, payload."""
        body = marshal.dumps(spec, 2)
        return len(body).to_bytes(4, "big") + body + payload

    def _call(
        self, spec: dict[str, Any], payload: bytes, *, deadline: float, max_reply: int, doing: str
    ) -> tuple[dict[str, Any] | None, RawReply]:
        """Sends one request; returns the parsed reply (``None`` if there is none) and the raw one.

        Raises:
            SandboxDiedError: the sandbox is gone.
            DeadlineExceeded: no answer within ``deadline`` seconds.
        """
        self._check_open()
        if self._broken is not None:
            raise SandboxDiedError(f"The sandbox {self.name} is unusable: {self._broken}")
        raw = self._transport(spec, payload, deadline=deadline, max_reply=max_reply)
        reply = None if raw.overflow else parse_reply(raw.stdout)
        if reply is None and not self._confirm_alive():
            self.mark_broken(f"it stopped while {doing}")
            raise self._died(doing)
        return reply, raw

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {**BASE_ENV, "HOME": self.config.workdir, **self.config.env}
        if extra:
            for k, v in extra.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise TypeError(f"env must map str to str, got {k!r}: {v!r}")
                env[k] = v
        return env

    def _emergency_stop(self, doing: str) -> None:
        """The supervisor missed its deadline: kill every process of the user, or the sandbox."""
        try:
            reply, _ = self._call(
                {"op": "killall"},
                b"",
                deadline=self.config.kill_grace,
                max_reply=4096,
                doing="stopping a runaway command",
            )
            if reply and reply.get("ok"):
                return
        except (DeadlineExceeded, SandboxDiedError):
            pass
        self.mark_broken(f"a command could not be stopped while {doing}")
        self._hard_kill()
        raise SandboxDiedError(
            f"The {self.kind} sandbox {self.name} had to be destroyed: a command outlived its "
            f"timeout by more than kill_grace={self.config.kill_grace}s and could not be stopped "
            "inside the sandbox."
        )

    # ------------------------------------------------------------------ the Sandbox protocol
    def exec(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Runs ``cmd`` (a shell line, or an argv list) and returns what happened.

        The command runs as the sandbox user in its own session. When ``timeout`` (default:
        ``config.timeout``) expires, its whole process tree is killed and ``timed_out`` is set;
        if even that fails within ``config.kill_grace``, every process of the sandbox user is
        killed. Output beyond ``config.output_limit`` per stream is cut.

        Raises:
            SandboxDiedError: the sandbox died (an ``InfraError``).
            SandboxClosedError: the sandbox was closed.
        """
        argv = self._argv(cmd)
        timeout = self.config.timeout if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(stdin, str):
            stdin = stdin.encode()
        elif stdin is not None and not isinstance(stdin, (bytes, bytearray)):
            raise TypeError(f"stdin must be str, bytes or None, got {type(stdin).__name__}")
        spec = {
            "op": "run",
            "argv": argv,
            "timeout": timeout,
            "cap": self.config.output_limit,
            "env": self._env(env),
            "cwd": workdir or self.config.workdir,
            "id": uuid.uuid4().hex,
        }
        t0 = time.monotonic()
        try:
            reply, raw = self._call(
                spec,
                bytes(stdin or b""),
                deadline=timeout + self.config.kill_grace,
                max_reply=2 * self.config.output_limit + 65536,
                doing="running a command",
            )
        except DeadlineExceeded:
            self._emergency_stop("running a command")
            return ExecResult(
                exit_code=137,
                signal=9,
                timed_out=True,
                stderr="envkit: the command did not stop at its timeout; every process of the "
                "sandbox user was killed.",
                duration_s=time.monotonic() - t0,
            )
        if reply is None or not reply.get("ok"):
            return self._lost_supervisor(reply, raw, time.monotonic() - t0)
        return ExecResult(
            exit_code=int(reply["exit_code"]),
            signal=reply.get("signal"),
            stdout=_text(reply["stdout"]),
            stderr=_text(reply["stderr"]),
            timed_out=bool(reply.get("timed_out")),
            oom_killed=bool(reply.get("oom_killed")),
            output_truncated=bool(reply.get("truncated")),
            duration_s=float(reply.get("duration", time.monotonic() - t0)),
        )

    def _lost_supervisor(
        self, reply: dict[str, Any] | None, raw: RawReply, duration: float
    ) -> ExecResult:
        """The sandbox lives but the supervisor gave no report: the command interfered with it."""
        if reply is not None:
            why = str(reply.get("error", "unknown error"))
        elif raw.overflow:
            why = "it wrote more than the protocol allows"
        else:
            why = f"it ended with exit code {raw.exit_code} without a report"
        detail = raw.stderr.decode("utf-8", "replace")[-2000:]
        code = raw.exit_code if raw.exit_code not in (None, 0) else 137
        return ExecResult(
            exit_code=code,
            stderr=f"envkit: the command's supervisor failed ({why}); the command probably "
            f"killed or disturbed it.\n{detail}".rstrip(),
            duration_s=duration,
        )

    @staticmethod
    def _argv(cmd: Command) -> list[str]:
        if isinstance(cmd, str):
            if not cmd.strip():
                raise ValueError("cmd is empty; pass a shell command line or an argv list")
            return ["/bin/sh", "-c", cmd]
        argv = list(cmd)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TypeError(f"cmd must be a string or a non-empty list of strings, got {cmd!r}")
        return argv

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        """Writes files; relative paths are under the work dir, parent dirs are created.

        Raises:
            SandboxFileError: a file could not be written (read-only place, disk full...).
        """
        entries, chunks = [], []
        for path, content in files.items():
            if not isinstance(path, str) or not path:
                raise TypeError(f"file paths must be non-empty strings, got {path!r}")
            data = content.encode() if isinstance(content, str) else bytes(content)
            entries.append({"path": path, "size": len(data)})
            chunks.append(data)
        if not entries:
            return
        reply, _ = self._file_op(
            {"op": "put", "files": entries, "cwd": self.config.workdir}, b"".join(chunks), "writing"
        )
        if not reply.get("ok"):
            raise SandboxFileError(
                f"cannot write {reply.get('path', '?')!r} in the sandbox: {reply.get('error')}"
            )

    def read_file(self, path: str, *, max_bytes: int = 64 << 20) -> bytes:
        """Returns the content of a file in the sandbox (relative paths: under the work dir).

        Raises:
            FileNotFoundError: there is no such file.
            SandboxFileError: it could not be read, or is larger than ``max_bytes``.
        """
        reply, _ = self._file_op(
            {"op": "get", "path": path, "max_bytes": max_bytes, "cwd": self.config.workdir},
            b"",
            "reading",
            max_reply=max_bytes + 65536,
        )
        if not reply.get("ok"):
            err = str(reply.get("error", ""))
            if err.startswith("FileNotFoundError"):
                raise FileNotFoundError(f"{path!r} does not exist in the sandbox")
            raise SandboxFileError(f"cannot read {path!r} in the sandbox: {err}")
        if reply.get("truncated"):
            raise SandboxFileError(f"{path!r} is larger than max_bytes={max_bytes}")
        return bytes(reply["stdout"])

    def read_text(self, path: str) -> str:
        """``read_file`` decoded as UTF-8 (invalid bytes replaced)."""
        return self.read_file(path).decode("utf-8", "replace")

    def _file_op(
        self, spec: dict[str, Any], payload: bytes, doing: str, *, max_reply: int = 65536
    ) -> tuple[dict[str, Any], RawReply]:
        deadline = max(self.config.timeout, 30.0) + self.config.kill_grace
        try:
            reply, raw = self._call(
                spec, payload, deadline=deadline, max_reply=max_reply, doing=f"{doing} files"
            )
        except DeadlineExceeded:
            self._emergency_stop(f"{doing} files")
            raise SandboxFileError(f"{doing} files in the sandbox took too long") from None
        if reply is None:
            raise SandboxFileError(
                f"{doing} files failed: the supervisor was disturbed by a process in the sandbox "
                f"(exit code {raw.exit_code})"
            )
        return reply, raw

    def reset(self) -> bool:
        """Makes the sandbox clean for a new episode: kills every process of the sandbox user and
        empties the work dir, /tmp, /var/tmp, /dev/shm and SysV IPC. Returns whether it is clean
        (a pool replaces it otherwise)."""
        if self._closed or self._broken is not None:
            return False
        try:
            reply, _ = self._call(
                {"op": "scrub", "dirs": self._scrub_dirs()},
                b"",
                deadline=30.0,
                max_reply=4096,
                doing="cleaning up",
            )
        except Exception:
            return False
        return bool(reply and reply.get("ok"))

    def _scrub_dirs(self) -> list[str]:
        return [self.config.workdir, *SCRUB_DIRS]

    def close(self) -> None:
        """Destroys the sandbox and everything in it. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._destroy()

    # ------------------------------------------------------------------ async twins
    async def aexec(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Async ``exec`` (runs in envkit's sandbox thread pool)."""
        return await run_blocking(
            self.exec, cmd, timeout=timeout, stdin=stdin, env=env, workdir=workdir
        )

    async def awrite_files(self, files: Mapping[str, str | bytes]) -> None:
        """Async ``write_files``."""
        await run_blocking(self.write_files, files)

    async def aread_file(self, path: str) -> bytes:
        """Async ``read_file``."""
        return await run_blocking(self.read_file, path)

    async def aclose(self) -> None:
        """Async ``close``."""
        await run_blocking(self.close)

    # ------------------------------------------------------------------ context managers
    def __enter__(self) -> SupervisedSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SupervisedSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (f"broken: {self._broken}" if self._broken else "ok")
        return f"{type(self).__name__}({self.name}, {state})"


def supervisor_argv(python: str) -> Sequence[str]:
    """The command that starts the supervisor inside a sandbox."""
    return [python, "-I", "-S", "-c", supervisor_source()]
