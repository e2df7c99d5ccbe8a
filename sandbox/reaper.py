"""The reaper: no sandbox container outlives the process that made it.

Every container carries labels naming its owner (pid, process start time, host, run id). Three
lines of defence remove them:

1. In process: live sandboxes and pools are tracked; ``atexit`` closes them (a ``KeyboardInterrupt``
   from SIGINT ends the interpreter through ``atexit`` too), and SIGTERM/SIGHUP handlers close them
   before the process dies.
2. At the next start: the first sandbox a process makes removes containers whose labelled owner is
   gone (a process killed with SIGKILL), and ``envkit sandbox cleanup`` does the same by hand.
3. In Docker: each container runs ``sleep <lifetime>`` with ``AutoRemove``, so even one nobody reaps
   stops and disappears at its hard deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "LABEL",
    "LABEL_HOST",
    "LABEL_PID",
    "LABEL_RUN",
    "LABEL_START",
    "close_all",
    "install",
    "list_containers",
    "owner_alive",
    "owner_labels",
    "reap",
    "run_id",
    "track",
    "untrack",
]

LABEL = "envkit.sandbox"
LABEL_PID = "envkit.owner_pid"
LABEL_START = "envkit.owner_start"
LABEL_HOST = "envkit.owner_host"
LABEL_RUN = "envkit.run_id"

_RUN_ID = uuid.uuid4().hex[:12]
_LOCK = threading.RLock()
_TRACKED: weakref.WeakSet[Any] = weakref.WeakSet()
_INSTALLED = False
_REAPED_AT_START = False
_PREVIOUS: dict[int, Any] = {}


def run_id() -> str:
    """This run's id: ``$ENVKIT_SANDBOX_RUN_ID`` if set (shared by child processes), else random."""
    return os.environ.get("ENVKIT_SANDBOX_RUN_ID") or _RUN_ID


def _start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), '' if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 :].split()[19].decode()
    except (OSError, IndexError, ValueError):
        return ""


def owner_labels() -> dict[str, str]:
    """The labels that tie a new container to this process."""
    pid = os.getpid()
    return {
        LABEL: "1",
        LABEL_PID: str(pid),
        LABEL_START: _start_time(pid),
        LABEL_HOST: socket.gethostname(),
        LABEL_RUN: run_id(),
    }


def owner_alive(labels: dict[str, str]) -> bool | None:
    """Whether the process named by a container's labels still runs (``None``: another host)."""
    if labels.get(LABEL_HOST) != socket.gethostname():
        return None
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = labels.get(LABEL_START, "")
    return not started or _start_time(pid) == started


def list_containers(client: Any, *, run: str | None = None) -> list[Any]:
    """envkit sandbox containers known to the daemon (running or not), optionally of one run."""
    filters = [LABEL] if run is None else [LABEL, f"{LABEL_RUN}={run}"]
    return client.containers.list(all=True, filters={"label": filters}, ignore_removed=True)


def _remove(client: Any, container_id: str) -> bool:
    import docker.errors

    try:
        client.api.remove_container(container_id, force=True)
        return True
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError as e:
        # 409: Docker's AutoRemove is already removing it.
        return e.status_code == 409


def reap(client: Any, *, everything: bool = False, run: str | None = None) -> list[str]:
    """Removes envkit containers whose owner process is gone; returns their names.

    Args:
        client: A docker-py client.
        everything: Remove every envkit sandbox container, including those of live processes
            and other hosts (``envkit sandbox cleanup --all``).
        run: Only containers of this run id (the Ray backend's clean-up after a batch).
    """
    removed = []
    for c in list_containers(client, run=run):
        labels = c.labels or {}
        if labels.get(LABEL_PID) == str(os.getpid()) and not everything:
            continue
        if (everything or owner_alive(labels) is False) and _remove(client, c.id):
            removed.append(c.name)
    return removed


def track(obj: Any) -> None:
    """Registers a sandbox or pool to be closed at exit (held weakly)."""
    with _LOCK:
        _TRACKED.add(obj)


def untrack(obj: Any) -> None:
    with _LOCK:
        _TRACKED.discard(obj)


def _close_quietly(obj: Any) -> None:
    with contextlib.suppress(Exception):
        obj.close()


def _parallel(fn: Callable[[Any], None], items: Iterable[Any]) -> None:
    items = list(items)
    threads = []
    try:
        for item in items:
            t = threading.Thread(target=fn, args=(item,), daemon=True)
            t.start()
            threads.append(t)
    except RuntimeError:  # no new threads at interpreter shutdown: finish sequentially
        for item in items[len(threads) :]:
            fn(item)
    for t in threads:
        t.join(timeout=30)


def close_all() -> None:
    """Closes every tracked pool, then every tracked sandbox (their containers are removed)."""
    with _LOCK:
        objs = list(_TRACKED)
    pools = [o for o in objs if getattr(o, "is_pool", False)]
    for p in pools:
        _close_quietly(p)
    with _LOCK:
        rest = [o for o in _TRACKED if not getattr(o, "is_pool", False)]
    _parallel(_close_quietly, rest)


def _on_signal(signum: int, frame: Any) -> None:
    close_all()
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers; atexit and the reaper still apply
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        current = signal.getsignal(sig)
        # SIGINT's default Python handler raises KeyboardInterrupt, and the interpreter then
        # exits through atexit; replace only handlers that would end the process without it.
        if sig == signal.SIGINT and current is not signal.SIG_DFL:
            continue
        if current is _on_signal or current == signal.SIG_IGN:
            continue
        _PREVIOUS[sig] = current
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, _on_signal)


def install(client: Any | None = None) -> None:
    """Installs the exit hooks once per process and, with a client, reaps orphans in background."""
    global _INSTALLED, _REAPED_AT_START
    with _LOCK:
        if not _INSTALLED:
            _INSTALLED = True
            atexit.register(close_all)
            _install_signal_handlers()
        if client is None or _REAPED_AT_START:
            return
        _REAPED_AT_START = True

    def _reap_orphans() -> None:
        with contextlib.suppress(Exception):
            reap(client)

    threading.Thread(target=_reap_orphans, name="envkit-reaper", daemon=True).start()
