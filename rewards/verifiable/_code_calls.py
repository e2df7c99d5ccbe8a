# ruff: noqa: UP031, SIM105 - runs inside the sandbox on any Python 3; no contextlib (startup)
"""``code_tests``' grader for structured tests: calls functions of the code, reports the values.

Runs inside the sandbox as ``python3 -I -S -c <this source>`` (stdlib only, no envkit imports).
Two kinds of process, so that the submitted code cannot reach the one that reports:

* the **grader** (this process, trusted) makes itself non-dumpable (no process of the sandbox
  user can open its ``/proc/<pid>/fd``, read its memory or trace it) and a child subreaper (every
  process the code starts, double forks and ``setsid`` included, stays its descendant and is
  killed after each test), writes ``STARTED`` on its stdout before any submitted code runs, and
  alone writes the report;
* a **runner** per test (a forked child, untrusted, a fresh copy of the code each time) has
  ``/dev/null`` for stdin, stdout and stderr and no other descriptor but its two pipes, execs
  the code, makes the one call it is sent and answers with the return value as plain JSON.

The host writes on stdin a sequence of frames, each a 4-byte big-endian length and that many
bytes of JSON: first ``{"code", "test_timeout", "total_timeout"}``, then one
``{"call": name, "args": [...], "kwargs": {...}}`` per test, then ``{"marker": ...}`` (read
only after every runner is dead, so no runner's memory ever held it). The grader prints one line,
``marker`` + JSON ``{"results": [...]}``, per test ``{"value": <JSON value>}`` or
``{"error": "..."}``; or ``{"fatal": "..."}`` when it could not protect itself.

Expected values never enter the sandbox: the host compares them, so code that prints, forges or
exits can only ever earn what returning the right values earns.
"""

import json
import os
import select
import signal
import sys
import time
import traceback

STARTED = "envkit-code-calls-started"
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


def _send(fd, obj):
    data = json.dumps(obj, allow_nan=False).encode()
    data = len(data).to_bytes(4, "big") + data
    while data:
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
    except ValueError:
        return None


# ------------------------------------------------------------------ the runner (untrusted side)
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
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-500:]


def _runner(code, test, wfd):
    """The child: loads a fresh copy of the code, makes the one call, answers on ``wfd``."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != wfd:
            try:
                os.close(fd)
            except OSError:
                pass
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    sys.setrecursionlimit(10000)
    namespace = {"__name__": "solution"}
    try:
        exec(compile(code, "solution.py", "exec"), namespace)
    except BaseException as e:
        _send(wfd, {"error": "the code could not be loaded: " + _short_error(e)})
        return
    fn = namespace.get(test["call"])
    if not callable(fn):
        _send(wfd, {"error": "the code does not define a function named %s" % test["call"]})
        return
    try:
        data = json.dumps(_strict(fn(*test["args"], **test["kwargs"])), allow_nan=False)
        if len(data) > MAX_VALUE_CHARS:
            reply = {"error": "the return value is too large"}
        else:
            reply = {"value": json.loads(data)}
    except BaseException as e:
        reply = {"error": _short_error(e)}
    _send(wfd, reply)


# ------------------------------------------------------------------ the grader (trusted side)
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
    """SIGKILLs every process below this one until none is left (orphans come back to us)."""
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
        time.sleep(0.002)


def _run_one(code, test, timeout):
    """The result entry for one test, in a fresh runner; every process it started is killed."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the runner: never returns
        try:
            os.close(rfd)
            _runner(code, test, wfd)
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        reply = _recv(rfd, time.monotonic() + timeout, MAX_VALUE_CHARS + 1000)
        if reply is None:
            try:
                running = os.waitpid(pid, os.WNOHANG) == (0, 0)
            except ChildProcessError:
                running = False
            if running:
                return {"error": "timed out after %ss" % timeout}
            return {"error": "the process running the code exited without answering"}
        if reply == "too large":
            return {"error": "the return value is too large"}
        if isinstance(reply, dict) and set(reply) == {"error"} and isinstance(reply["error"], str):
            return {"error": reply["error"][:500]}
        if isinstance(reply, dict) and set(reply) == {"value"}:
            try:  # plain JSON only (no NaN / Infinity)
                return {"value": json.loads(json.dumps(reply["value"], allow_nan=False))}
            except ValueError:
                pass
        return {"error": "the process running the code answered out of protocol"}
    finally:
        os.close(rfd)
        _kill_all()


def main():
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # the code may signal us: only SIGKILL/STOP work
    protected = _prctl(PR_SET_DUMPABLE, 0) == 0 and _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    os.write(1, (STARTED + "\n").encode())
    header = _recv(0)
    code = header["code"]
    test_timeout, total_timeout = float(header["test_timeout"]), float(header["total_timeout"])
    del header
    report = {"results": []}
    results = report["results"]
    if not protected:
        report = {"fatal": "the grader could not make itself non-dumpable (prctl failed)"}
    started = time.monotonic()
    while True:
        frame = _recv(0)  # read only now: no runner was alive while this input was unknown
        if not isinstance(frame, dict) or "call" not in frame:
            break
        if "fatal" in report:
            continue
        if time.monotonic() - started > total_timeout:
            results.append({"error": "not run: the tests' time budget was used up"})
            continue
        results.append(_run_one(code, frame, test_timeout))
    _kill_all()
    marker = frame.get("marker") if isinstance(frame, dict) else None
    if isinstance(marker, str):
        os.write(1, ("\n" + marker + json.dumps(report) + "\n").encode())


if __name__ == "__main__":  # run as `python3 -I -S -c <source>`
    main()
