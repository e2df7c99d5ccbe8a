"""``DockerSandbox``: a hardened Docker container driven through docker-py (never the CLI).

Defaults (see ``SandboxConfig``): no network, every capability dropped but the four envkit's
supervisor needs to run commands as another user (SETUID, SETGID, SETPCAP, KILL: the commands
themselves have none, their bounding set is empty), ``no-new-privileges``, Docker's default
seccomp profile plus a filter that denies io_uring, commands run as a non-root user that cannot
signal or inspect their supervisor (root) or the container's init (another non-root uid), a
read-only root filesystem with size-limited tmpfs work dir and /tmp, memory = memory+swap limit,
pids limit, CPU quota, ``nofile``/``fsize``/``core`` ulimits, a private IPC namespace, no Docker
socket, and labels naming the owner process. The container's main process is
``sleep <lifetime>`` under docker-init with ``AutoRemove``: the hard deadline after which it
vanishes even if its owner was killed.

Example:
    >>> from envkit.sandbox import DockerSandbox
    >>> with DockerSandbox() as sb:
    ...     r = sb.exec("python3 -c 'print(6 * 7)'", timeout=5)
    >>> r.stdout, r.exit_code
    ('42\\n', 0)
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Any

from envkit.sandbox import reaper
from envkit.sandbox.channel import (
    ChannelCompromised,
    SupervisorChannel,
    attach_exec,
    check_docker_py,
)
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.docker_client import BUILD_HINT, docker_client, translate_docker_error
from envkit.sandbox.errors import ImageNotFoundError, SandboxDiedError, SandboxError
from envkit.sandbox.supervised import (
    DeadlineExceeded,
    Payload,
    RawReply,
    SupervisedSandbox,
    parse_reply,
    payload_chunks,
    supervisor_argv,
)

__all__ = ["SUPERVISOR_CAPS", "SUPERVISOR_USER", "DockerSandbox", "host_config_kwargs"]

SUPERVISOR_USER = "0:0"
"""The supervisor runs as root in the container, so the commands (another uid) cannot reach it."""
SUPERVISOR_CAPS = ["SETUID", "SETGID", "SETPCAP", "KILL"]
"""The only capabilities of the container: switch to the sandbox user, empty the command's
bounding set, and kill the sandbox user's processes. Commands run with none."""

# The container starts as root so that Docker grants SUPERVISOR_CAPS to root `docker exec`s (it
# gives no capabilities to execs of a container whose user is not root); its main process then
# drops to ``init_user`` for good and becomes `sleep <lifetime>`.
_INIT = (
    "import os, sys\n"
    "u, g = int(sys.argv[1]), int(sys.argv[2])\n"
    "os.setgroups([]); os.setresgid(g, g, g); os.setresuid(u, u, u)\n"
    "os.execvp('sleep', ['sleep', sys.argv[3]])\n"
)


def init_command(config: SandboxConfig) -> list[str]:
    """The container's main process: drop to ``init_user``, then sleep for ``lifetime``."""
    uid, _, gid = config.init_user.partition(":")
    return [config.python, "-I", "-S", "-c", _INIT, uid, gid or uid, str(int(config.lifetime))]


def host_config_kwargs(config: SandboxConfig) -> dict[str, Any]:
    """The docker-py ``create_host_config`` arguments that implement ``config``."""
    from docker.types import Mount, Ulimit

    tmpfs_opts = "rw,exec,nosuid,nodev"
    kwargs: dict[str, Any] = {
        "network_mode": config.network,
        "cap_drop": ["ALL"],
        "cap_add": list(SUPERVISOR_CAPS),
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": {
            config.workdir: f"{tmpfs_opts},size={config.workdir_size},uid={config.uid},"
            f"gid={config.gid},mode=0700",
            "/tmp": f"{tmpfs_opts},size={config.tmp_size},mode=1777",
        },
        "shm_size": config.shm_size,
        "mem_limit": config.memory,
        "memswap_limit": config.memory,
        "pids_limit": config.pids,
        "nano_cpus": int(config.cpus * 1e9),
        "ulimits": [
            Ulimit(name="nofile", soft=config.nofile, hard=config.nofile),
            Ulimit(name="fsize", soft=config.file_size, hard=config.file_size),
            Ulimit(name="core", soft=0, hard=0),
        ],
        "ipc_mode": "private",
        "init": True,
        "auto_remove": True,
        "mounts": [
            Mount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in config.mounts
        ],
    }
    if config.runtime:
        kwargs["runtime"] = config.runtime
    return kwargs


class DockerSandbox(SupervisedSandbox):
    """A sandbox in its own hardened container.

    Args:
        config: Limits and image (``SandboxConfig()`` by default).
        client: A docker-py client (the process's shared one by default).

    Raises:
        ImageNotFoundError: the image is missing (run ``envkit sandbox build``).
        DockerUnavailableError / DockerPermissionError: no usable daemon (the message says how
            to fix it).
        IncompatibleDockerPyError: the installed docker-py lacks a private member envkit uses
            (checked before any container is made).
    """

    kind = "docker"
    max_channels = 4
    """Most supervisor channels (concurrent fast commands) per sandbox."""

    def __init__(self, config: SandboxConfig | None = None, *, client: Any | None = None) -> None:
        super().__init__(config)
        self._client = client if client is not None else docker_client()
        check_docker_py(self._client.api)
        self._argv_cache = list(supervisor_argv(self.config.python))
        self._channels: list[SupervisorChannel] = []
        self._channels_lock = threading.Lock()
        self._spawning = 0
        reaper.install(self._client)
        self.container_id = self._start()
        self.started_at = time.monotonic()
        reaper.track(self)

    @property
    def name(self) -> str:
        return self.container_id[:12] if getattr(self, "container_id", None) else super().name

    def _start(self) -> str:
        import docker.errors

        api = self._client.api
        cfg = self.config
        try:
            host_config = api.create_host_config(**host_config_kwargs(cfg))
            created = api.create_container(
                cfg.image,
                command=init_command(cfg),
                user=SUPERVISOR_USER,
                working_dir=cfg.workdir,
                hostname="sandbox",
                environment=dict(cfg.env),
                labels={**cfg.labels, **reaper.owner_labels()},
                network_disabled=cfg.network == "none",
                host_config=host_config,
            )
        except docker.errors.ImageNotFound as e:
            raise ImageNotFoundError(
                f"The sandbox image {cfg.image!r} is not present. {BUILD_HINT} Or set "
                "SandboxConfig(image=...) to an image you have (`docker images`)."
            ) from e
        except Exception as e:
            raise translate_docker_error(e, "creating a sandbox container") from e
        cid = created["Id"]
        try:
            api.start(cid)
        except Exception as e:
            with contextlib.suppress(Exception):
                api.remove_container(cid, force=True)
            raise translate_docker_error(e, "starting a sandbox container") from e
        return cid

    # ------------------------------------------------------------------ backend hooks
    def _state(self) -> dict[str, Any] | None:
        """The container's Docker state, ``None`` if it no longer exists.

        Raises:
            SandboxError: the daemon cannot be reached (``DockerUnavailableError``...).
        """
        import docker.errors

        try:
            return self._client.api.inspect_container(self.container_id)["State"]  # type: ignore[no-any-return]
        except docker.errors.NotFound:
            return None
        except Exception as e:
            raise translate_docker_error(e, "checking the sandbox container") from e

    def alive(self) -> bool:
        """Whether the container still runs (one inspect call)."""
        if self._closed:
            return False
        try:
            state = self._state()
        except SandboxError:
            return False
        return bool(state and state.get("Running") and not state.get("Paused"))

    def _confirm_alive(self) -> bool:
        # A killed container ends its exec streams a moment before Docker marks it stopped, so
        # "running" is not proof: a fresh process that answers is. If none answers, wait for
        # Docker's state to settle.
        if not self.alive():
            return False
        try:
            raw = self._oneshot({"op": "probe"}, b"", time.monotonic() + 10, 4096)
            reply = parse_reply(raw.stdout)
        except Exception:
            reply = None
        if reply is not None and reply.get("ok"):
            return True
        for _ in range(40):
            time.sleep(0.05)
            if not self.alive():
                return False
        return True

    def _died(self, doing: str) -> SandboxError:
        try:
            state = self._state()
        except SandboxError as e:
            return e  # the daemon is unreachable: say so, not that the container died
        detail = "it no longer exists"
        if state is not None:
            detail = (
                f"status {state.get('Status')}, exit code {state.get('ExitCode')}, "
                f"OOMKilled {state.get('OOMKilled')}"
            )
        return SandboxDiedError(
            f"The sandbox container {self.name} stopped while {doing} ({detail}). It was killed "
            "from outside, reached its lifetime, or the daemon restarted."
        )

    # ------------------------------------------------------------------ channels
    def _take_channel(self) -> SupervisorChannel | None:
        """An idle live channel (locked for the caller), a new one, or None if all are busy."""
        with self._channels_lock:
            for ch in list(self._channels):
                if ch.dead:
                    self._channels.remove(ch)
                    continue
                if ch.lock.acquire(blocking=False):
                    if ch.usable():
                        return ch
                    ch.lock.release()
                    self._channels.remove(ch)
            if len(self._channels) + self._spawning >= self.max_channels:
                return None
            self._spawning += 1
        try:
            ch = SupervisorChannel(
                self._client.api,
                self.container_id,
                self._argv_cache,
                SUPERVISOR_USER,
                seccomp=self._supervisor_filter,
            )
        except Exception:
            return None  # the one-shot path reports what is wrong
        finally:
            with self._channels_lock:
                self._spawning -= 1
        ch.lock.acquire()
        with self._channels_lock:
            self._channels.append(ch)
        return ch

    def _drop_channels(self) -> None:
        with self._channels_lock:
            channels, self._channels = self._channels, []
        for ch in channels:
            ch.close()

    def warm(self) -> None:
        """Starts a supervisor channel now, so that the next command does not wait for it."""
        if not self.config.fast_exec or self._closed:
            return
        ch = self._take_channel()
        if ch is not None:
            ch.lock.release()

    def reset(self) -> bool:
        """Cleans the sandbox for a new episode (see ``SupervisedSandbox.reset``).

        The clean-up runs through a live supervisor channel (a few ms): the supervisors run as
        root, so killing every process of the sandbox user leaves them up.
        """
        clean = super().reset()
        if clean:
            self.warm()
        return clean

    def _transport(
        self, spec: dict[str, Any], payload: Payload, *, deadline: float, max_reply: int
    ) -> RawReply:
        t_end = time.monotonic() + deadline
        if self.config.fast_exec:
            ch = self._take_channel()
            if ch is not None:
                try:
                    raw = ch.request(spec, payload, t_end, max_reply)
                except ChannelCompromised as e:
                    self.taint(str(e))
                    raw = None
                finally:
                    ch.lock.release()
                if raw is not None:
                    return raw
        return self._oneshot(spec, payload, t_end, max_reply)

    def _oneshot(
        self, spec: dict[str, Any], payload: Payload, t_end: float, max_reply: int
    ) -> RawReply:
        """One ``docker exec`` of the supervisor for one request."""
        api = self._client.api
        try:
            exec_id = api.exec_create(
                self.container_id,
                self._argv_cache,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                user=SUPERVISOR_USER,
            )["Id"]
            attached = attach_exec(api, exec_id)
        except Exception as e:
            if not self.alive():
                self.mark_broken("its container stopped")
                raise self._died("starting a command") from e
            return self._refused(e)
        try:
            stdout, stderr, overflow = _exchange(
                attached.sock, [self._request(spec), *payload_chunks(payload)], t_end, max_reply
            )
        finally:
            attached.close()
        code: int | None = None
        if not stdout.startswith(b"ENVKIT1\n") or overflow:
            with contextlib.suppress(Exception):
                code = api.exec_inspect(exec_id).get("ExitCode")
        return RawReply(stdout=stdout, stderr=stderr, exit_code=code, overflow=overflow)

    @staticmethod
    def _refused(exc: Exception) -> RawReply:
        """The daemon could not start a process in a live container (e.g. the pids limit is
        exhausted by the sandboxed code): a failure of the command, not of the infrastructure."""
        return RawReply(
            stdout=b"",
            stderr=f"envkit: the sandbox could not start the command: {exc}".encode(),
            exit_code=126,
        )

    def _hard_kill(self) -> None:
        with contextlib.suppress(Exception):
            self._client.api.kill(self.container_id)

    def _destroy(self) -> None:
        reaper.untrack(self)
        self._drop_channels()
        with contextlib.suppress(Exception):
            reaper._remove(self._client, self.container_id)

    def kill(self) -> None:
        """Kills the container from outside (fault injection in tests and benchmarks)."""
        self._client.api.kill(self.container_id)


def _exchange(
    sock: socket.socket, request: list[bytes], t_end: float, max_reply: int
) -> tuple[bytes, bytes, bool]:
    """Writes ``request`` (chunks) to an attached exec, half-closes, and reads the multiplexed
    output."""

    def remaining() -> float:
        left = t_end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded
        return left

    try:
        for chunk in request:
            sock.settimeout(remaining())
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the process ended without reading all of its input; read what it said
    except TimeoutError:
        raise DeadlineExceeded from None
    streams = {1: bytearray(), 2: bytearray()}
    total = 0
    buf = bytearray()
    try:
        while True:
            sock.settimeout(remaining())
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 8:
                kind, size = struct.unpack(">BxxxL", buf[:8])
                if len(buf) < 8 + size:
                    break
                if kind in streams:
                    streams[kind] += buf[8 : 8 + size]
                total += size
                del buf[: 8 + size]
            if total > max_reply:
                return bytes(streams[1]), bytes(streams[2][-65536:]), True
    except TimeoutError:
        raise DeadlineExceeded from None
    except (ConnectionResetError, OSError):
        pass  # the container went away: the caller checks whether it still lives
    return bytes(streams[1]), bytes(streams[2]), False
