# ruff: noqa: UP031 - runs inside the sandbox, on whatever Python 3 the image has
"""Runs a submitted solution on test inputs inside the sandbox (stdlib only, no envkit imports).

Executed as ``python3 -c <this source>`` with a JSON request on stdin: ``code`` (the model's
source), ``function`` (its name), ``inputs`` (a list of argument lists), ``test_timeout`` (seconds
per call), ``total_timeout`` (seconds for all calls: the rest are reported as not run) and
``marker``. It prints one line, ``marker`` + JSON: per input either
``{"value": <JSON return value>}`` or ``{"error": "..."}``, or ``{"load_error": "..."}`` when the
code does not even define the function.

Expected outputs never enter the sandbox: the host compares the values, so code that prints or
forges results can only ever earn what computing the right values earns.
"""

import copy
import io
import json
import os
import signal
import sys
import time
import traceback

MAX_VALUE_CHARS = 100_000


class TestTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise TestTimeout()


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


def main():
    request = json.loads(sys.stdin.read())
    marker = request["marker"]
    real_stdout = os.dup(1)
    sys.setrecursionlimit(10000)
    signal.signal(signal.SIGALRM, _alarm)
    captured = io.StringIO()
    sys.stdout = captured  # prints of the solution must not disturb the report
    namespace = {"__name__": "solution"}
    report = {}
    try:
        signal.setitimer(signal.ITIMER_REAL, float(request["test_timeout"]))
        exec(compile(request["code"], "solution.py", "exec"), namespace)
        signal.setitimer(signal.ITIMER_REAL, 0)
        fn = namespace.get(request["function"])
        if not callable(fn):
            report["load_error"] = (
                "the code does not define a function named %s" % (request["function"])
            )
    except TestTimeout:
        report["load_error"] = "running the module took longer than %ss" % request["test_timeout"]
    except BaseException as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        report["load_error"] = _short_error(e)
    results = []
    started = time.monotonic()
    if "load_error" not in report:
        for args in request["inputs"]:
            if time.monotonic() - started > float(request["total_timeout"]):
                results.append({"error": "not run: the tests' time budget was used up"})
                continue
            try:
                signal.setitimer(signal.ITIMER_REAL, float(request["test_timeout"]))
                value = fn(*copy.deepcopy(args))
                signal.setitimer(signal.ITIMER_REAL, 0)
                data = json.dumps(_strict(value))
                if len(data) > MAX_VALUE_CHARS:
                    results.append({"error": "the return value is too large"})
                else:
                    results.append({"value": json.loads(data)})
            except TestTimeout:
                results.append({"error": "timed out after %ss" % request["test_timeout"]})
            except BaseException as e:
                signal.setitimer(signal.ITIMER_REAL, 0)
                results.append({"error": _short_error(e)})
    report["results"] = results
    os.write(real_stdout, ("\n" + marker + json.dumps(report) + "\n").encode())


if __name__ == "__main__":  # run as `python3 -c <source>`
    main()
