"""``SandboxConfig``: what a sandbox may use. The defaults are the hardened ones.

Example:
    >>> from envkit.sandbox import SandboxConfig
    >>> cfg = SandboxConfig(memory="1g", cpus=2)
    >>> cfg.memory, cfg.network
    (1073741824, 'none')
    >>> SandboxConfig(user="root")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for SandboxConfig
    user
      Value error, user='root' would run sandboxed code as root; ...
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_IMAGE", "Mount", "SandboxConfig", "parse_size"]

DEFAULT_IMAGE = "envkit-sandbox:latest"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: int | str) -> int:
    """Parses a byte size: an int, or a string such as ``"512m"``, ``"1g"``, ``"64KiB"``.

    Units are binary (``k`` = 1024). Raises ``ValueError`` with the accepted forms.

    Example:
        >>> parse_size("512m"), parse_size("1GiB"), parse_size(4096)
        (536870912, 1073741824, 4096)
    """
    if isinstance(value, bool):
        raise ValueError(f"a size must be bytes (int) or a string like '512m', got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"a size must be positive, got {value}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(
            f"cannot parse size {value!r}: use bytes (int) or a number with a unit k, m, g or t "
            "(binary: 1k = 1024), e.g. '512m' or '2g'"
        )
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return n


class Mount(BaseModel):
    """A host directory or file made visible inside the sandbox.

    Example:
        >>> Mount(source="/data/corpus", target="/data").read_only
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="Absolute path on the host (the Docker daemon's host).")
    target: str = Field(description="Absolute path inside the sandbox.")
    read_only: bool = Field(
        default=True, description="Mount read-only (the default); set False to let code write."
    )

    @field_validator("source", "target")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"mount paths must be absolute, got {v!r}")
        return v

    @field_validator("source")
    @classmethod
    def _no_sockets(cls, v: str) -> str:
        real = os.path.realpath(v)
        is_socket = os.path.exists(real) and stat.S_ISSOCK(os.stat(real).st_mode)
        if os.path.basename(real) == "docker.sock" or is_socket:
            raise ValueError(
                f"refusing to mount {v!r}: a socket (the Docker socket in particular) lets "
                "sandboxed code control the host. Mount data directories only."
            )
        return v


class SandboxConfig(BaseModel):
    """Resources and isolation of one sandbox. Every default is the safe choice.

    Sizes accept bytes or strings such as ``"512m"``; they are stored as bytes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(
        default=DEFAULT_IMAGE,
        description="Docker image to run. Build the default with `envkit sandbox build`; it is "
        "never pulled from a registry.",
    )
    cpus: float = Field(default=1.0, gt=0, description="CPU quota in cores (CFS quota).")
    memory: int = Field(
        default=parse_size("512m"),
        description="Memory limit in bytes; swap is disabled (memory-swap = memory). Files in the "
        "tmpfs work dir count towards it.",
    )
    pids: int = Field(
        default=256, ge=8, description="Most processes/threads alive at once (stops fork bombs)."
    )
    workdir: str = Field(
        default="/work", description="Writable, size-limited tmpfs where commands start."
    )
    workdir_size: int = Field(default=parse_size("256m"), description="Size of the work dir tmpfs.")
    tmp_size: int = Field(default=parse_size("64m"), description="Size of the /tmp tmpfs.")
    shm_size: int = Field(default=parse_size("16m"), description="Size of /dev/shm.")
    file_size: int = Field(
        default=parse_size("256m"), description="Largest file a process may write (RLIMIT_FSIZE)."
    )
    nofile: int = Field(default=1024, ge=16, description="Most open file descriptors per process.")
    output_limit: int = Field(
        default=1 << 20,
        ge=1024,
        description="Bytes of stdout and of stderr kept per command; the rest is dropped (head "
        "and tail kept) and ExecResult.output_truncated is set.",
    )
    timeout: float = Field(
        default=30.0, gt=0, description="Default per-command timeout in seconds (exec's timeout)."
    )
    kill_grace: float = Field(
        default=5.0,
        gt=0,
        description="Seconds past a command's timeout after which the host stops waiting for the "
        "in-sandbox supervisor and kills every process of the sandbox user itself.",
    )
    lifetime: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Hard deadline of a container in seconds: it stops and is removed by Docker "
        "after this long, even if the owning process was killed. Pools replace containers "
        "before it.",
    )
    user: str = Field(
        default="1000:1000",
        description="uid:gid that commands run as; never root. Its processes cannot signal or "
        "trace the container's init, which runs under another uid.",
    )
    init_user: str = Field(
        default="65534:65534",
        description="uid:gid of the container's init process (docker-init + sleep); must differ "
        "from `user`.",
    )
    network: str = Field(
        default="none",
        description="Docker network mode. 'none' (default) leaves only a loopback interface; "
        "naming another network ('bridge', a user network) is the explicit opt-in to "
        "network access. 'host' and 'container:...' are refused.",
    )
    mounts: tuple[Mount, ...] = Field(
        default=(), description="Extra host paths to mount (read-only unless a Mount says not)."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables set for every command."
    )
    runtime: str | None = Field(
        default=None, description="OCI runtime, e.g. 'runsc' for gVisor (Docker's default if None)."
    )
    fast_exec: bool = Field(
        default=True,
        description="Keep envkit's supervisor running inside the sandbox and send it commands "
        "over an attached stream (a few ms each) instead of one `docker exec` per command "
        "(~50 ms each). Sandboxed code can kill it; it is then restarted.",
    )
    python: str = Field(
        default="python3",
        description="Python interpreter inside the sandbox that runs envkit's supervisor "
        "(timeouts, output caps, file transfer). The image must provide it.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra container labels (envkit adds its own)."
    )

    @field_validator("memory", "workdir_size", "tmp_size", "shm_size", "file_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @field_validator("user", "init_user")
    @classmethod
    def _not_root(cls, v: str, info: Any) -> str:
        uid = v.split(":", 1)[0].strip()
        if uid in ("0", "root", ""):
            raise ValueError(
                f"{info.field_name}={v!r} would run sandboxed code as root; use a non-root "
                "uid:gid such as '1000:1000'"
            )
        if not re.fullmatch(r"\d+(:\d+)?", v):
            raise ValueError(f"{info.field_name} must be numeric 'uid:gid', got {v!r}")
        return v

    @field_validator("network")
    @classmethod
    def _network(cls, v: str) -> str:
        if v == "host" or v.startswith("container:"):
            raise ValueError(
                f"network={v!r} would share a network stack with the host or another container; "
                "use 'none' (default) or a Docker network such as 'bridge' to opt in to access"
            )
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str) -> str:
        if not v.startswith("/") or v.rstrip("/") in ("", "/proc", "/sys", "/dev", "/etc", "/usr"):
            raise ValueError(
                f"workdir must be an absolute path of its own, e.g. '/work'; got {v!r}"
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> SandboxConfig:
        tmpfs = self.workdir_size + self.tmp_size + self.shm_size
        if tmpfs >= self.memory:
            raise ValueError(
                f"workdir_size + tmp_size + shm_size ({tmpfs} bytes) must be less than memory "
                f"({self.memory} bytes): files in tmpfs count towards the memory limit, and "
                "commands need memory too. Raise memory or lower the tmpfs sizes."
            )
        if self.user.split(":")[0] == self.init_user.split(":")[0]:
            raise ValueError(
                f"user and init_user must be different uids (both {self.user!r}): otherwise "
                "sandboxed code could kill or trace the container's init"
            )
        return self

    @property
    def uid(self) -> int:
        """The numeric uid commands run as."""
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        """The numeric gid commands run as (the uid if none is given)."""
        parts = self.user.split(":")
        return int(parts[1]) if len(parts) > 1 else int(parts[0])

    @property
    def network_enabled(self) -> bool:
        """True when the config opts in to a network other than loopback."""
        return self.network != "none"
