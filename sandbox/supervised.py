"""``SupervisedSandbox``: the part of every backend that talks to the in-sandbox supervisor.

A backend only has to move bytes: ``_transport`` starts the supervisor inside the sandbox, feeds
it a request on stdin and returns what it wrote. Everything else (timeouts, output caps, the
process-tree kill, file transfer, scrubbing between episodes, the hard deadline) is here, once.
"""

from __future__ import annotations

import abc
import marshal
import secrets
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from envkit.sandbox.base import Command, Sandbox, run_blocking
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.errors import (
    SandboxClosedError,
    SandboxDiedError,
    SandboxError,
    SandboxProtocolError,
    SandboxSeccompError,
)
from envkit.sandbox.result import ExecResult
from envkit.sandbox.seccomp import supervisor_filter

__all__ = [
    "DeadlineExceeded",
    "Payload",
    "RawReply",
    "SandboxFileError",
    "SupervisedSandbox",
    "check_reply",
    "payload_chunks",
]

Payload = bytes | Sequence[bytes]
"""A request's payload: bytes, or a sequence of chunks that is sent without being joined."""

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
    tainted: bool = False
    """Bytes nobody asked for came with the reply: the stream is no longer trusted."""


def payload_chunks(payload: Payload) -> list[bytes]:
    """The payload as a list of chunks (never joined, never copied)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return [payload] if len(payload) else []  # type: ignore[list-item]
    return [c for c in payload if len(c)]


def payload_len(payload: Payload) -> int:
    """Total bytes of a payload."""
    return sum(len(c) for c in payload_chunks(payload))


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


_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "run": {"exit_code": int},
    "get": {"stdout": bytes},
    "put": {"count": int},
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "signal": int,
    "duration": (int, float),
    "error": str,
    "path": str,
    "ok": int,
    "truncated": int,
    "timed_out": int,
    "oom_killed": int,
    "refused": str,
    "errno": int,
}


def check_reply(reply: dict[str, Any] | None, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Checks that a parsed reply answers ``spec``: the same request id, and the fields its op
    needs, each of the right type.

    Raises:
        SandboxProtocolError: it does not (it was forged, or the supervisor was subverted).
    """
    if reply is None:
        raise SandboxProtocolError("the supervisor's reply is malformed")
    rid = spec.get("rid")
    if rid is not None and reply.get("rid") != rid:
        raise SandboxProtocolError(
            "the reply does not answer this request (its request id differs): bytes were forged "
            "into the supervisor's stream"
        )
    required = _REQUIRED.get(str(spec.get("op")), {}) if reply.get("ok") else {}
    for key in required:
        if key not in reply:
            raise SandboxProtocolError(f"the supervisor's {spec.get('op')} reply lacks {key!r}")
    for key, kind in {**_OPTIONAL, **required}.items():
        if key in reply and not isinstance(reply[key], kind):
            raise SandboxProtocolError(f"the supervisor's reply has a bad {key!r}: {reply[key]!r}")
    return reply


_FILTER_FIX = (
    "Run sandboxes on a Linux kernel built with seccomp filters (CONFIG_SECCOMP_FILTER; "
    "`grep Seccomp /proc/self/status` prints nothing without it) and, for Docker, a container "
    "runtime that lets processes add their own filters (runc, Docker's default, does)."
)
_FILTER_CAUSES = {
    ("seccomp", 22): "the kernel rejected it (EINVAL): it has no seccomp filter support, or the "
    "filter is malformed",
    ("seccomp", 13): "the kernel requires no_new_privs first (EACCES)",
    ("seccomp", 14): "the kernel could not read the filter (EFAULT)",
    ("seccomp", 12): "the kernel ran out of memory for filters (ENOMEM): too many are stacked",
    ("no_new_privs", 22): "the kernel does not support no_new_privs (EINVAL, Linux < 3.5)",
}


def seccomp_refusal(reply: Mapping[str, Any], backend: str) -> SandboxSeccompError:
    """The error for a supervisor that refused to run anything (its reply has ``refused``)."""
    what, err = str(reply.get("refused")), int(reply.get("errno") or 0)
    if what == "filter":
        cause = "envkit handed it no valid filter"
        fix = "This is a bug in envkit (or a test's deliberately malformed filter): report it."
    elif what == "dumpable":
        cause = "it could not make itself non-dumpable (prctl(PR_SET_DUMPABLE, 0))"
        fix = "Run sandboxes on a Linux kernel that supports prctl(2)."
    else:
        step = "no_new_privs" if what == "no_new_privs" else "its seccomp filter"
        cause = f"it could not set {step}: " + _FILTER_CAUSES.get(
            (what, err), f"prctl failed with errno {err}"
        )
        fix = _FILTER_FIX
    return SandboxSeccompError(
        f"The {backend} sandbox refused to run anything because its supervisor could not lock "
        f"itself down: {cause} ({reply.get('error', '')}). envkit never runs sandboxed code "
        f"without its seccomp filter (it denies io_uring). {fix}"
    )


@cache
def _filter() -> bytes:
    return supervisor_filter()


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class SupervisedSandbox(Sandbox, abc.ABC):
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
        self._spoiled: str | None = None
        self._tainted: str | None = None
        self._close_lock = threading.Lock()
        self._seccomp_error: SandboxSeccompError | None = None
        self._supervisor_filter = _filter()
        """The seccomp filter every supervisor of this sandbox installs (built once per process,
        by ``envkit.sandbox.seccomp.supervisor_filter``)."""

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
        return self._broken or self._spoiled

    def mark_broken(self, reason: str) -> None:
        """Records that the sandbox must not be reused (a pool then replaces it)."""
        if self._broken is None:
            self._broken = reason

    def taint(self, reason: str) -> None:
        """Records that sandboxed code tampered with the supervisor's stream: the episode goes
        on (its own results are at stake), but ``reset()`` fails so a pool replaces it."""
        if self._tainted is None:
            self._tainted = reason

    @property
    def tainted(self) -> str | None:
        """Why the sandbox may not serve another episode, or ``None``."""
        return self._tainted

    def _spoil(self, reason: str) -> None:
        """The command made the sandbox unusable (e.g. a command that could not be stopped):
        the rest of the episode gets tool errors, not ``InfraError``, and the pool replaces it."""
        if self._spoiled is None:
            self._spoiled = reason

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosedError(
                f"The sandbox {self.name} is closed; acquire a new one (pool.acquire()) or create "
                "a new sandbox."
            )

    # ------------------------------------------------------------------ supervisor calls
    def _request(self, spec: dict[str, Any], payload: Payload = b"") -> bytes:
        """A one-shot supervisor's stdin: 4-byte length, marshalled spec (with the seccomp
        filter it must install), payload (joined)."""
        body = marshal.dumps({**spec, "seccomp": self._supervisor_filter}, 2)
        return len(body).to_bytes(4, "big") + body + b"".join(payload_chunks(payload))

    def _call(
        self,
        spec: dict[str, Any],
        payload: Payload,
        *,
        deadline: float,
        max_reply: int,
        doing: str,
    ) -> tuple[dict[str, Any] | None, RawReply]:
        """Sends one request; returns the checked reply (``None`` if there is none, or if it
        does not answer this request) and the raw one.

        Every request carries a fresh random id that the reply must echo; a reply that does not
        (or that came with extra bytes) taints the sandbox, see ``taint``.

        Raises:
            SandboxDiedError: the sandbox is gone.
            SandboxSeccompError: the supervisor refused to run anything: it could not install
                its seccomp filter (the sandbox is then broken).
            DeadlineExceeded: no answer within ``deadline`` seconds.
        """
        self._check_open()
        if self._seccomp_error is not None:
            raise SandboxSeccompError(str(self._seccomp_error))
        if self._broken is not None:
            raise SandboxDiedError(f"The sandbox {self.name} is unusable: {self._broken}")
        ids = {"rid": secrets.token_hex(16), "uid": self.config.uid, "gid": self.config.gid}
        spec = {**spec, **ids}
        raw = self._transport(spec, payload, deadline=deadline, max_reply=max_reply)
        if raw.tainted:
            self.taint(f"extra bytes in the supervisor's stream while {doing}")
        parsed = None if raw.overflow else parse_reply(raw.stdout)
        if parsed is None and not self._confirm_alive():
            self.mark_broken(f"it stopped while {doing}")
            raise self._died(doing)
        if parsed is None:
            return None, raw
        try:
            reply = check_reply(parsed, spec)
        except SandboxProtocolError as e:
            self.taint(str(e))
            return None, RawReply(b"", str(e).encode(), raw.exit_code, tainted=True)
        if reply.get("refused"):
            self._seccomp_error = seccomp_refusal(reply, self.kind)
            self.mark_broken(str(self._seccomp_error))
            raise self._seccomp_error
        return reply, raw

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {**BASE_ENV, "HOME": self.config.workdir, **self.config.env}
        if extra:
            for k, v in extra.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise TypeError(f"env must map str to str, got {k!r}: {v!r}")
                env[k] = v
        return env

    def _emergency_stop(self, doing: str) -> str:
        """The supervisor missed its deadline: kill every process of the user, or else end the
        sandbox. Returns what was done, for the model: this is the command's doing, not an
        ``InfraError`` (the rest of the episode gets tool errors, the pool replaces the sandbox).

        Raises:
            SandboxDiedError: the sandbox died on its own meanwhile.
        """
        try:
            reply, _ = self._call(
                {"op": "killall"},
                b"",
                deadline=self.config.kill_grace,
                max_reply=4096,
                doing="stopping a runaway command",
            )
            if reply and reply.get("ok"):
                self.taint(f"a command outlived its timeout while {doing}")
                return "every process of the sandbox user was killed"
        except DeadlineExceeded:
            pass
        if not self.alive():
            self.mark_broken(f"it stopped while {doing}")
            raise self._died(doing)
        self._spoil(
            f"a command outlived its timeout by more than kill_grace={self.config.kill_grace}s "
            f"while {doing} and could not be stopped, so the sandbox was destroyed"
        )
        self._hard_kill()
        return "it could not be stopped, so the sandbox was destroyed; start a new episode"

    def _spoiled_result(self) -> ExecResult:
        return ExecResult(
            exit_code=137,
            stderr=f"envkit: this sandbox is gone: {self._spoiled}. Nothing more can run in "
            "this episode.",
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
        if self._spoiled is not None:
            self._check_open()
            return self._spoiled_result()
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
            done = self._emergency_stop("running a command")
            return ExecResult(
                exit_code=137,
                signal=9,
                timed_out=True,
                stderr=f"envkit: the command did not stop at its timeout; {done}.",
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
        elif raw.tainted:
            why = raw.stderr.decode("utf-8", "replace")
        elif raw.overflow:
            why = "it wrote more than the protocol allows"
        else:
            why = f"it ended with exit code {raw.exit_code} without a report"
        detail = "" if raw.tainted else raw.stderr.decode("utf-8", "replace")[-2000:]
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

    def write_files(
        self, files: Mapping[str, str | bytes], *, timeout: float | None = None
    ) -> None:
        """Writes files; relative paths are under the work dir, parent dirs are created.

        Contents are streamed to the sandbox, never joined. Only regular files are written: a
        final symlink, a FIFO, a device and anything under ``/proc``, ``/sys`` or ``/dev`` (but
        ``/dev/shm``) are refused.

        Args:
            files: ``{path: content}``.
            timeout: Seconds the transfer may take (default ``config.timeout``).

        Raises:
            SandboxFileError: a file could not be written (read-only place, disk full, refused
                path, too slow...).
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
            {"op": "put", "files": entries, "cwd": self.config.workdir},
            chunks,
            "writing",
            timeout=timeout,
        )
        if not reply.get("ok"):
            raise SandboxFileError(
                f"cannot write {reply.get('path', '?')!r} in the sandbox: {reply.get('error')}"
            )

    def read_file(
        self, path: str, *, max_bytes: int = 64 << 20, timeout: float | None = None
    ) -> bytes:
        """Returns the content of a regular file in the sandbox (relative paths: under the work
        dir). A final symlink, a FIFO, a device and ``/proc``, ``/sys``, ``/dev`` are refused
        (it never blocks on a FIFO).

        Raises:
            FileNotFoundError: there is no such file.
            SandboxFileError: it could not be read, or is larger than ``max_bytes``.
        """
        reply, _ = self._file_op(
            {"op": "get", "path": path, "max_bytes": max_bytes, "cwd": self.config.workdir},
            b"",
            "reading",
            max_reply=max_bytes + 65536,
            timeout=timeout,
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
        self,
        spec: dict[str, Any],
        payload: Payload,
        doing: str,
        *,
        max_reply: int = 65536,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], RawReply]:
        timeout = self.config.timeout if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if self._spoiled is not None:
            self._check_open()
            raise SandboxFileError(f"{doing} files: this sandbox is gone: {self._spoiled}")
        deadline = timeout + self.config.kill_grace
        try:
            reply, raw = self._call(
                spec, payload, deadline=deadline, max_reply=max_reply, doing=f"{doing} files"
            )
        except DeadlineExceeded:
            done = self._emergency_stop(f"{doing} files")
            raise SandboxFileError(
                f"{doing} files in the sandbox took longer than {timeout:g}s; {done}"
            ) from None
        if reply is None:
            why = raw.stderr.decode("utf-8", "replace") if raw.tainted else None
            raise SandboxFileError(
                f"{doing} files failed: the supervisor was disturbed by a process in the sandbox "
                f"({why or f'exit code {raw.exit_code}'})"
            )
        return reply, raw

    def reset(self) -> bool:
        """Makes the sandbox clean for a new episode: kills every process of the sandbox user and
        empties the work dir, /tmp, /var/tmp, /dev/shm and SysV IPC. Returns whether it is clean
        (a pool replaces it otherwise)."""
        if self._closed or self.broken is not None or self._tainted is not None:
            return False
        try:
            reply, _ = self._call(
                {
                    "op": "scrub",
                    "dirs": self._scrub_dirs(),
                    "chmod": {self.config.workdir: 0o700},
                },
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
    # aexec, awrite_files, aclose and the context managers come from ``Sandbox``.
    async def aread_file(
        self, path: str, *, max_bytes: int = 64 << 20, timeout: float | None = None
    ) -> bytes:
        """Async ``read_file``."""
        return await run_blocking(self.read_file, path, max_bytes=max_bytes, timeout=timeout)

    def __repr__(self) -> str:
        state = "closed" if self._closed else (f"broken: {self._broken}" if self._broken else "ok")
        return f"{type(self).__name__}({self.name}, {state})"


def supervisor_argv(python: str) -> Sequence[str]:
    """The command that starts the supervisor inside a sandbox."""
    return [python, "-I", "-S", "-c", supervisor_source()]
