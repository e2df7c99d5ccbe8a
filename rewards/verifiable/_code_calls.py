# ruff: noqa: UP031, SIM105 - runs inside the sandbox on any Python 3; no contextlib (startup)
"""The sandbox-side grader of ``code_tests`` and ``PythonCoding-v0`` (``code.run_calls``).

Runs inside the sandbox as ``python3 -I -S -c <this source>`` (stdlib only, no envkit imports;
the names imported from ``_sandbox_prelude`` are that file's text, put in by ``code._script``).
Two kinds of process, so that the submitted code cannot reach the one that reports:

* the **grader** (this process, trusted) makes itself non-dumpable (no process of the sandbox
  user can open its ``/proc/<pid>/fd``, read its memory or trace it) and a child subreaper (every
  process the code starts, double forks and ``setsid`` included, stays its descendant and is
  killed after each test), writes ``STARTED`` on its stdout before any submitted code runs, and
  alone writes the report;
* a **runner** per test (untrusted): a fresh interpreter (``fork`` + ``exec`` of this source
  with ``--runner``, so its memory holds nothing of the grader's) with ``/dev/null`` for stdin,
  stdout and stderr and no other descriptor but its two pipes. It loads a fresh copy of the code
  and answers requests one at a time: a call (``{"call", "args", "kwargs"}``) with the return
  value as data, or ``{"names": true}`` with what ``from solution import *`` would import.
  With ``reuse_runner`` (``PythonCoding-v0``: faster) one runner, a forked child, loads the
  code once and takes the call tests one after the other until it times out, dies or breaks
  the protocol (then a fresh one takes the next test). Either way the grader reads a test from
  stdin only after every earlier one was answered, so code run for one test never sees a later
  test's input before it answered (no visible example reveals a hidden input).

The host writes on stdin a sequence of frames, each a 4-byte big-endian length and that many
bytes of JSON: first ``{"code", "source", "test_timeout", "total_timeout", "reuse_runner"}``
(``source``: this script), then one frame per test, then ``{"marker": ...}`` (read only after
every runner is dead). A test is either

* ``{"call": name, "args": [...], "kwargs": {...}}``: the runner makes the call and answers with
  the return value as plain JSON, which the grader reports (the host compares it with the
  expected value, which never enters the sandbox); or
* ``{"snippet": "assert add(2, 3) == 5"}`` (isolated snippets): the grader runs the snippet
  *itself*, against proxies of the names the code exports; calling a proxy sends the arguments
  to the runner and returns the result, both as tagged data (``None``, bool, int, float, str,
  list, tuple, dict, set, frozenset, bytes: only these exact types, so the values the snippet
  compares are the grader's own builtins, never an object of the code's). The grader reports
  whether the snippet raised.

The grader prints one line, ``marker`` + JSON ``{"results": [...]}``, per test
``{"value": <JSON value>}``, ``{"passed": true}``, ``{"error": "..."}`` or ``{"load_error":
"..."}`` (the code could not be loaded, or does not define the function called); or ``{"fatal":
...}`` when it could not protect itself.
"""

import builtins
import json
import os
import signal
import sys
import time

from ._sandbox_prelude import (  # code._script puts the prelude's text here
    MAX_VALUE_CHARS,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    _kill_all,
    _prctl,
    _recv,
    _send,
    _short_error,
    _strict,
)

STARTED = "envkit-code-calls-started"


_TAGS = {"$t": tuple, "$s": set, "$fs": frozenset}


def _encode(value, depth=0):
    """Tagged JSON for builtin data of exactly these types (isolated snippets), else TypeError."""
    if depth > 1000:
        raise TypeError("the value is nested too deeply")
    t = type(value)
    if value is None or t in (bool, int, str):
        return value
    if t is float:
        return value if value == value and abs(value) != float("inf") else {"$f": repr(value)}
    if t is list:
        return [_encode(v, depth + 1) for v in value]
    for tag, typ in _TAGS.items():
        if t is typ:
            return {tag: [_encode(v, depth + 1) for v in value]}
    if t is dict:
        return {"$d": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]}
    if t is bytes:
        return {"$b": value.hex()}
    raise TypeError(
        "a %s cannot cross to or from the process running the code: isolated snippets exchange "
        "only None, bool, int, float, str, list, tuple, dict, set, frozenset and bytes" % t.__name__
    )


def _decode(data, depth=0):
    """The builtin value of ``_encode``'s output (a fresh object of an exact builtin type)."""
    if depth > 1000:
        raise TypeError("the value is nested too deeply")
    t = type(data)
    if data is None or t in (bool, int, str, float):
        return data
    if t is list:
        return [_decode(v, depth + 1) for v in data]
    if t is dict and len(data) == 1:
        ((tag, inner),) = data.items()
        if tag in _TAGS and type(inner) is list:
            return _TAGS[tag](_decode(v, depth + 1) for v in inner)
        if tag == "$d" and type(inner) is list:
            return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in inner}
        if tag == "$b" and type(inner) is str:
            return bytes.fromhex(inner)
        if tag == "$f" and inner in ("nan", "inf", "-inf"):
            return float(inner)
    raise TypeError("malformed data from the process running the code")


# ------------------------------------------------------------------ the runner (untrusted side)
def _runner_main(rfd, wfd):
    """``--runner`` (or a forked child): loads the code, then answers one request at a time."""
    sys.setrecursionlimit(10000)
    code = _recv(rfd)
    namespace = {"__name__": "solution"}
    load_error = None
    try:
        exec(compile(code, "solution.py", "exec"), namespace)
    except BaseException as e:
        load_error = "the code could not be loaded: " + _short_error(e)
    while True:
        req = _recv(rfd)
        if not isinstance(req, dict):
            return
        if load_error is not None:
            _send(wfd, {"load_error": load_error})
            continue
        if "names" in req:
            _send(wfd, {"names": _exports(namespace)})
            continue
        fn = namespace.get(req["call"])
        if not callable(fn):
            missing = "the code does not define a function named %s" % req["call"]
            _send(wfd, {"load_error": missing})
            continue
        try:
            if req.get("tagged"):
                args = _decode(req["args"])
                kwargs = _decode(req["kwargs"])
                data = json.dumps({"value": _encode(fn(*args, **kwargs))}, allow_nan=False)
            else:
                data = json.dumps(
                    {"value": _strict(fn(*req["args"], **req["kwargs"]))}, allow_nan=False
                )
            if len(data) > MAX_VALUE_CHARS:
                data = json.dumps({"error": "the return value is too large"})
        except BaseException as e:
            data = json.dumps({"error": _short_error(e)})
        data = data.encode()
        data = len(data).to_bytes(4, "big") + data
        while data:
            data = data[os.write(wfd, data) :]


def _exports(namespace):
    """What ``from solution import *`` imports: {name: "call" | "module" | ["value", data]}."""
    names = namespace.get("__all__")
    if not (isinstance(names, (list, tuple)) and all(type(n) is str for n in names)):
        names = [n for n in namespace if not n.startswith("_")]
    out = {}
    for name in names:
        if name not in namespace:
            continue
        value = namespace[name]
        if callable(value):
            out[name] = "call"
        elif type(value) is type(sys) and getattr(value, "__name__", None) == name:
            out[name] = "module"  # `import math`: the grader imports its own copy
        else:
            try:
                out[name] = ["value", _encode(value)]
            except TypeError:
                pass  # objects: not importable by an isolated snippet
    return out


# ------------------------------------------------------------------ the grader (trusted side)
class _Runner:
    """A runner process and its two pipes: a fresh interpreter (fork + exec), or with
    ``exec_fresh=False`` a forked child (faster; only for call tests, see ``main``)."""

    def __init__(self, source, code, exec_fresh=True):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        self.pid = os.fork()
        self.broken = False  # it timed out, died or broke the protocol: never ask it again
        if self.pid == 0:  # the runner: never returns
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                if exec_fresh:  # becomes a fresh interpreter: nothing of ours stays in memory
                    for fd in (to_r, from_w):
                        os.set_inheritable(fd, True)
                    argv = [sys.executable, "-I", "-S", "-c", source, "--runner", str(to_r)]
                    os.execv(sys.executable, [*argv, str(from_w)])
                for name in os.listdir("/proc/self/fd"):  # keeps only stdio and its pipes
                    if int(name) > 2 and int(name) not in (to_r, from_w):
                        try:
                            os.close(int(name))
                        except OSError:
                            pass
                _runner_main(to_r, from_w)
            finally:
                os._exit(127)
        os.close(to_r)
        os.close(from_w)
        os.set_blocking(to_w, False)  # a runner that stops reading cannot block us
        self.wfd, self.rfd = to_w, from_r
        self.code = code

    def ask(self, request, deadline):
        """The runner's reply (a dict), or {"error"} when it broke the protocol or time ran out."""
        self.broken = True  # until it answers in protocol
        try:
            if self.code is not None:
                code, self.code = self.code, None
                _send(self.wfd, code, deadline)
            _send(self.wfd, request, deadline)
        except TimeoutError:
            return {"error": "timed out"}
        except OSError:
            return {"error": "the process running the code exited"}
        reply = _recv(self.rfd, deadline, MAX_VALUE_CHARS + 1000)
        if reply is None:
            try:
                running = os.waitpid(self.pid, os.WNOHANG) == (0, 0)
            except ChildProcessError:
                running = False
            if running:
                return {"error": "timed out"}
            return {"error": "the process running the code exited without answering"}
        if reply == "too large":
            return {"error": "the return value is too large"}
        if isinstance(reply, dict) and len(reply) == 1:
            ((key, value),) = reply.items()
            if key in ("error", "load_error") and isinstance(value, str):
                self.broken = False
                return {key: value[:500]}
            if key in ("value", "names"):
                self.broken = False
                return reply
        return {"error": "the process running the code answered out of protocol"}

    def close(self):
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass


def _run_call(runner, test, deadline):
    request = {"call": test["call"], "args": test["args"], "kwargs": test["kwargs"]}
    reply = runner.ask(request, deadline)
    if "value" in reply:
        try:  # plain JSON only (no NaN / Infinity)
            return {"value": json.loads(json.dumps(reply["value"], allow_nan=False))}
        except (ValueError, RecursionError):
            runner.broken = True
            return {"error": "the process running the code answered out of protocol"}
    if "load_error" in reply:
        return reply
    return {"error": reply.get("error", "the process running the code answered out of protocol")}


class _SnippetTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _SnippetTimeout()


def _proxy(runner, name, deadline):
    def call(*args, **kwargs):
        request = {"call": name, "args": _encode(args), "kwargs": _encode(kwargs), "tagged": 1}
        reply = runner.ask(request, deadline)
        if "value" not in reply:
            raise RuntimeError("%s(...) failed: %s" % (name, reply.get("error")))
        return _decode(reply["value"])

    call.__name__ = call.__qualname__ = name
    return call


def _bind(names, runner, deadline, namespace, module):
    """Binds the names the runner reports, as ``from solution import *`` would; never a dunder
    or a builtin (a snippet's ``len``/``sorted``/``isinstance`` stay the real ones)."""
    if not isinstance(names, dict):
        raise RuntimeError("the process running the code answered out of protocol")
    for name, kind in names.items():
        name = str(name)
        if name.startswith("__") or hasattr(builtins, name) or not name.isidentifier():
            continue
        if kind == "call":
            value = _proxy(runner, name, deadline)
        elif kind == "module":
            try:
                value = __import__(name)  # the grader's own copy (stdlib only: -I -S)
            except ImportError:
                continue
        elif isinstance(kind, list) and len(kind) == 2 and kind[0] == "value":
            value = _decode(kind[1])
        else:
            raise RuntimeError("the process running the code answered out of protocol")
        namespace[name] = value
        setattr(module, name, value)


def _run_snippet(runner, snippet, timeout, deadline):
    """Runs the (trusted) snippet here, with the code's names as proxies into the runner."""
    reply = runner.ask({"names": True}, deadline)
    if "names" not in reply:
        if "load_error" in reply:
            return reply
        return {"error": reply.get("error", "the code's names could not be read")}
    namespace = {"__name__": "__envkit_test__"}
    module = type(sys)("solution")
    saved = sys.modules.get("solution"), sys.stdout, sys.stderr
    sys.modules["solution"] = module
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - closed in finally
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, min(timeout, deadline - time.monotonic())))
    try:
        _bind(reply["names"], runner, deadline, namespace, module)
        exec(compile(snippet, "<test>", "exec"), namespace)
        outcome = {"passed": True}
    except _SnippetTimeout:
        outcome = {"error": "timed out after %ss" % timeout}
    except BaseException as e:
        outcome = {"error": _short_error(e)}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        sys.stdout.close()
        if saved[0] is None:
            sys.modules.pop("solution", None)
        else:
            sys.modules["solution"] = saved[0]
        sys.stdout, sys.stderr = saved[1], saved[2]
    return outcome


def _run_one(runner, test, timeout):
    """The result entry for one test."""
    deadline = time.monotonic() + timeout
    if "snippet" in test:
        return _run_snippet(runner, test["snippet"], timeout, deadline)
    return _run_call(runner, test, deadline)


def main():
    if sys.argv[1:2] == ["--runner"]:
        _runner_main(int(sys.argv[2]), int(sys.argv[3]))
        return
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # the code may signal us: only SIGKILL/STOP work
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    protected = _prctl(PR_SET_DUMPABLE, 0) == 0 and _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    os.write(1, (STARTED + "\n").encode())
    header = _recv(0)
    code, source = header["code"], header["source"]
    test_timeout, total_timeout = float(header["test_timeout"]), float(header["total_timeout"])
    reuse = header.get("reuse_runner") is True
    del header
    report = {"results": []}
    results = report["results"]
    if not protected:
        report = {"fatal": "the grader could not make itself non-dumpable (prctl failed)"}
    started = time.monotonic()
    runner = None
    while True:
        frame = _recv(0)  # read only now: every runner has answered all it was asked before
        if not isinstance(frame, dict) or not ("call" in frame or "snippet" in frame):
            break
        if "fatal" in report:
            continue
        if time.monotonic() - started > total_timeout:
            results.append({"error": "not run: the tests' time budget was used up"})
            continue
        # A forked runner holds a copy of our memory: never once a snippet (which may hold
        # expected values) was read. Snippets always get a fresh interpreter of their own.
        reuse = reuse and "snippet" not in frame
        if runner is not None and not reuse:
            runner.close()
            _kill_all()
            runner = None
        if runner is None:
            runner = _Runner(source, code, exec_fresh=not reuse)
        results.append(_run_one(runner, frame, test_timeout))
        if not reuse or runner.broken:  # (a kept runner's processes are killed at the end)
            runner.close()
            _kill_all()
            runner = None
    _kill_all()
    marker = frame.get("marker") if isinstance(frame, dict) else None
    if isinstance(marker, str):
        os.write(1, ("\n" + marker + json.dumps(report) + "\n").encode())


if __name__ == "__main__":  # run as `python3 -I -S -c <source>`
    main()
