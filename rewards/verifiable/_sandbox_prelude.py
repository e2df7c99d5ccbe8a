# ruff: noqa: UP031, SIM105 - runs inside the sandbox on any Python 3; no contextlib (startup)
"""What every sandbox-side grading script starts with (stdlib only, no envkit imports).

``_code_calls.py`` and ``_code_snippets.py`` run inside the sandbox as ``python3 -I -S -c
SOURCE``, so each must be one self-contained text: they import these names from here, and
``code._script`` puts this file's text in place of that import when it builds ``SOURCE``.

* ``_prctl``: prctl(2) through the bare ``_ctypes`` module (non-dumpable, child subreaper);
* ``_kill_all``: SIGKILLs every process below this one (a subreaper gets every orphan back);
* ``_send`` / ``_recv``: frames over pipes, a 4-byte big-endian length and that many bytes of
  JSON, with deadlines;
* ``_strict``: a return value as plain JSON data, refusing look-alikes; ``_short_error``: the
  last line of an exception, at most 500 characters.
"""

import json
import os
import select
import signal
import time

MAX_VALUE_CHARS = 100_000
MAX_FRAME = 64 << 20
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option, arg):
    """prctl(2) through the bare _ctypes module; -1 if unavailable."""
    try:
        import _ctypes

        fn = _ctypes.dlsym(_ctypes.dlopen(None, 2), "prctl")
        return _ctypes.call_function(fn, (option, arg, 0, 0, 0))
    except Exception:
        return -1


# ------------------------------------------------------------------ processes
def _descendants():
    """Pids whose parent is this process (the subreaper inherits every orphan below it)."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and fields[0] != b"Z":
            out.append(int(name))
    return out


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


def _kill_all():
    """SIGKILLs every process below this one until none is left (orphans come back to a
    subreaper, so the next round finds the children of the killed); reaps the dead."""
    for _ in range(500):
        _reap()
        pids = _descendants()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in pids:  # each is our child: wait until it is dead (SIGKILL'd, it will be)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


# ------------------------------------------------------------------ frames over pipes
def _read_exact(fd, n, deadline=None):
    """n bytes from fd; None on EOF or when the deadline passes first."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _send(fd, obj, deadline=None):
    """Writes one frame; with a deadline, ``fd`` is non-blocking and TimeoutError may come."""
    data = json.dumps(obj, allow_nan=False).encode()
    data = len(data).to_bytes(4, "big") + data
    while data:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError("timed out")
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                pass
        else:
            data = data[os.write(fd, data) :]


def _recv(fd, deadline=None, limit=MAX_FRAME):
    """One frame as JSON; None on EOF / timeout / bad JSON; "too large" past ``limit`` bytes."""
    head = _read_exact(fd, 4, deadline)
    if head is None:
        return None
    n = int.from_bytes(head, "big")
    if n > limit:
        return "too large"
    body = _read_exact(fd, n, deadline)
    if body is None:
        return None
    try:
        return json.loads(body.decode())
    except (ValueError, RecursionError):
        return None


# ------------------------------------------------------------------ data that crosses
def _strict(value, depth=0):
    """The value as plain JSON data; refuses look-alikes (subclasses with a rigged __eq__...)."""
    if depth > 1000:
        raise TypeError("the return value is nested too deeply")
    t = type(value)
    if value is None or t in (bool, int, str):
        return value
    if t is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError("the return value contains a non-finite float")
        return value
    if t in (list, tuple):
        return [_strict(v, depth + 1) for v in value]
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError("dict keys must be str, got %s" % type(k).__name__)
            out[k] = _strict(v, depth + 1)
        return out
    raise TypeError("return values must be JSON data, got %s" % t.__name__)


def _short_error(exc):
    import traceback  # only when needed: it costs every start a few milliseconds

    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-500:]
