# ruff: noqa: UP031, SIM105 - runs inside the sandbox on any Python 3; no contextlib (startup)
"""Runs a submitted solution on test inputs inside a clean sandbox (stdlib only, no envkit imports).

Executed as ``python3 -I -S -c <this source>``. Two processes, so that the submitted code cannot
reach the process that reports:

* the **grader** (this process, trusted) makes itself non-dumpable (no other process of the
  sandbox user can open its ``/proc/<pid>/fd``, ``mem`` or trace it), reads the request, and
  writes the one report line on its stdout;
* the **runner** (a forked child, untrusted) has ``/dev/null`` for stdin, stdout and stderr,
  execs the code and calls the function on one input at a time, sent over a pipe. It holds no
  marker and never sees an input before it has answered the previous one, so code run at import
  or on a visible example cannot read the hidden inputs. The grader enforces every time limit
  itself (a runner that overruns is killed and a fresh one takes the next input) and checks
  every answer as plain JSON.

The host writes on stdin a sequence of frames, each a 4-byte big-endian length and that many
bytes of JSON: first ``{"code", "function", "test_timeout", "total_timeout"}``, then one
``{"args": [...]}`` per test call, then ``{"marker": ...}``. The grader prints one line,
``marker`` + JSON: ``{"results": [...]}`` with per input either ``{"value": <JSON value>}`` or
``{"error": "..."}``, plus ``"load_error"`` when the code does not even define the function, or
``{"fatal": "..."}`` when the grader could not protect itself (the host raises).

Expected outputs never enter the sandbox: the host compares the values, so code that prints or
forges results can only ever earn what computing the right values earns.
"""

import json
import os
import select
import signal
import sys
import time
import traceback

MAX_VALUE_CHARS = 100_000
MAX_FRAME = 64 << 20
PR_SET_DUMPABLE = 4


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
    """One frame as JSON; None on EOF / timeout; "too large" past ``limit`` bytes."""
    head = _read_exact(fd, 4, deadline)
    if head is None:
        return None
    n = int.from_bytes(head, "big")
    if n > limit:
        return "too large"
    body = _read_exact(fd, n, deadline)
    return None if body is None else json.loads(body.decode())


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


def _runner(code, function, rfd, wfd):
    """The child: loads the code, then answers one ``{"args"}`` frame at a time."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in (rfd, wfd):
            try:
                os.close(fd)
            except OSError:
                pass
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.setrecursionlimit(10000)
    namespace = {"__name__": "solution"}
    try:
        exec(compile(code, "solution.py", "exec"), namespace)
        fn = namespace.get(function)
        if not callable(fn):
            _send(wfd, {"load_error": "the code does not define a function named %s" % function})
            return
    except BaseException as e:
        _send(wfd, {"load_error": _short_error(e)})
        return
    _send(wfd, {"loaded": True})
    while True:
        frame = _recv(rfd)
        if not isinstance(frame, dict):
            return
        try:
            data = json.dumps(_strict(fn(*frame["args"])), allow_nan=False)
            reply = (
                {"error": "the return value is too large"}
                if len(data) > MAX_VALUE_CHARS
                else {"value": json.loads(data)}
            )
        except BaseException as e:
            reply = {"error": _short_error(e)}
        _send(wfd, reply)


# ------------------------------------------------------------------ the grader (trusted side)
class _Child:
    def __init__(self, code, function, timeout):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the runner: never returns
            try:
                os.close(to_w)
                os.close(from_r)
                _runner(code, function, to_r, from_w)
            finally:
                os._exit(0)
        os.close(to_r)
        os.close(from_w)
        self.wfd, self.rfd = to_w, from_r
        reply = _recv(self.rfd, time.monotonic() + timeout, 1 << 16)
        self.load_error = None
        if reply is None:
            self.load_error = (
                "running the module took longer than %ss" % timeout
                if self.alive()
                else "the code exited while it was being loaded"
            )
        elif not (isinstance(reply, dict) and reply.get("loaded") is True):
            error = reply.get("load_error") if isinstance(reply, dict) else None
            self.load_error = str(error)[:500] if error else "the code could not be loaded"
        if self.load_error:
            self.kill()

    def alive(self):
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def call(self, args, timeout):
        """The result entry for one call; kills the runner if it misbehaves."""
        try:
            _send(self.wfd, {"args": args})
        except OSError:
            self.kill()
            return {"error": "the process running the code exited"}
        reply = _recv(self.rfd, time.monotonic() + timeout, MAX_VALUE_CHARS + 1000)
        if reply is None:
            running = self.alive()
            self.kill()
            if running:
                return {"error": "timed out after %ss" % timeout}
            return {"error": "the process running the code exited"}
        if reply == "too large":
            self.kill()
            return {"error": "the return value is too large"}
        if isinstance(reply, dict) and set(reply) == {"error"} and isinstance(reply["error"], str):
            return {"error": reply["error"][:500]}
        if isinstance(reply, dict) and set(reply) == {"value"}:
            try:  # plain JSON only (no NaN / Infinity)
                return {"value": json.loads(json.dumps(reply["value"], allow_nan=False))}
            except ValueError:
                pass
        self.kill()
        return {"error": "the process running the code answered out of protocol"}

    def kill(self):
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.pid = 0
        for fd in ("wfd", "rfd"):
            if getattr(self, fd, None) is not None:
                try:
                    os.close(getattr(self, fd))
                except OSError:
                    pass
                setattr(self, fd, None)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a dead runner must not kill the grader
    protected = _prctl(PR_SET_DUMPABLE, 0) == 0
    header = _recv(0)
    code, function = header["code"], header["function"]
    test_timeout, total_timeout = float(header["test_timeout"]), float(header["total_timeout"])
    del header
    report = {"results": []}
    results = report["results"]
    child = None
    if not protected:
        report = {"fatal": "the grader could not make itself non-dumpable (prctl failed)"}
    else:
        child = _Child(code, function, test_timeout)
        if child.load_error:
            report["load_error"] = child.load_error
            child = None
    started = time.monotonic()
    reload_error = None
    while True:
        frame = _recv(0)  # read only now: the runner cannot have seen this input before
        if not isinstance(frame, dict) or "args" not in frame:
            break
        if "load_error" in report or "fatal" in report:
            continue
        if time.monotonic() - started > total_timeout:
            results.append({"error": "not run: the tests' time budget was used up"})
            continue
        if child is None and reload_error is None:
            child = _Child(code, function, test_timeout)
            if child.load_error:
                reload_error, child = child.load_error, None
        if child is None:
            results.append({"error": "the code could not be reloaded: %s" % reload_error})
            continue
        results.append(child.call(frame["args"], test_timeout))
        if child.pid == 0:
            child = None
    if child is not None:
        child.kill()
    marker = frame.get("marker") if isinstance(frame, dict) else None
    if isinstance(marker, str):
        os.write(1, ("\n" + marker + json.dumps(report) + "\n").encode())


if __name__ == "__main__":  # run as `python3 -I -S -c <source>`
    main()
