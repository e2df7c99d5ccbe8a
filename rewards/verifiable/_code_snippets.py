# ruff: noqa: UP031 - runs inside the sandbox on any Python 3 (startup: stdlib only)
"""``code_tests``' runner for assert-style test snippets (the legacy form).

Runs inside the sandbox as ``python3 -I -S -c <this source>`` (stdlib only, no envkit imports;
the names imported from ``_sandbox_prelude`` are that file's text, put in by ``code._script``),
the spec (``{"code", "tests", "nonce", "timeout"}``) as JSON on stdin: nothing of it is on disk.
The runner makes itself non-dumpable (no process of the sandbox user can open its
``/proc/<pid>/fd``, write into its stdout or trace it) and a child subreaper, writes ``STARTED``
before any submitted code runs, and then, per test:

* writes the code to ``solution.py`` in a fresh private directory (so no test sees what an
  earlier one left there),
* runs ``from solution import *``, the snippet and then a line that reads the nonce from an
  inherited pipe and prints it (the nonce is in no code object of the test process), in a new
  process with stdin from ``/dev/null``,
* kills every process the test started (double forks and ``setsid`` included: they are its
  descendants as a subreaper) and removes the directory,
* writes one JSON line ``{"i", "ok", "error"}``: ok when the process exited 0 and its last
  output line is the nonce.

What this cannot prevent: the submitted code runs in the same process as the snippet, so code
written to defeat the check can (return an object equal to anything, read the nonce's pipe and
exit, trace and skip the assert...). Only the structured form (``_code_calls.py``) is sound.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from ._sandbox_prelude import (  # code._script puts the prelude's text here
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    _kill_all,
    _prctl,
)

STARTED = "envkit-code-snippets-started"


def _run(spec, test):
    """(ok, error) of one snippet, in a fresh directory and process."""
    workdir = tempfile.mkdtemp(prefix="envkit_test_")
    rfd, wfd = os.pipe()
    try:
        with open(os.path.join(workdir, "solution.py"), "w") as f:
            f.write(spec["code"])
        os.write(wfd, spec["nonce"].encode())
        os.close(wfd)
        wfd = -1
        script = "from solution import *\n%s\nimport os\nprint(os.read(%d, 64).decode())\n" % (
            test,
            rfd,
        )
        try:
            p = subprocess.run(
                [sys.executable, "-c", script],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                pass_fds=(rfd,),
                timeout=spec["timeout"],
            )
        except subprocess.TimeoutExpired:
            return False, "timed out"
        out = p.stdout.decode("utf-8", "replace").strip().splitlines()
        ok = p.returncode == 0 and out[-1:] == [spec["nonce"]]
        tail = p.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = tail or ["exit status %d" % p.returncode]
        return ok, "" if ok else tail[-1][-300:]
    finally:
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
        _kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    for sig in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # the code may signal us: only SIGKILL/STOP work
    protected = _prctl(PR_SET_DUMPABLE, 0) == 0 and _prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    os.write(1, (STARTED + "\n").encode())
    spec = json.loads(sys.stdin.buffer.read().decode())
    if not protected:
        fatal = {"fatal": "the runner could not make itself non-dumpable (prctl failed)"}
        os.write(1, (json.dumps(fatal) + "\n").encode())
        return
    for i, test in enumerate(spec["tests"]):
        ok, error = _run(spec, test)
        os.write(1, (json.dumps({"i": i, "ok": ok, "error": error}) + "\n").encode())


if __name__ == "__main__":  # run as `python3 -I -S -c <source>`
    main()
