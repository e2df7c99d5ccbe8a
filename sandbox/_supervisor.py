# ruff: noqa: UP031, SIM105 - runs inside the sandbox on any Python 3; no contextlib (startup time)
"""envkit's in-sandbox supervisor: runs one operation inside a sandbox and reports it as JSON.

This file is executed *inside* the sandbox as ``python3 -I -S -c <source>`` (stdlib only, Python
3.7+, no envkit imports). The host writes a request on its stdin: a 4-byte big-endian length, that
many bytes of JSON spec, then a payload (the command's stdin, or file contents). The supervisor
writes one JSON reply on stdout. Operations:

* ``run``: runs ``argv`` in a new session with stdin = the rest of the payload, drains its stdout
  and stderr (keeping the head and tail up to ``cap`` bytes each), and on ``timeout`` kills its
  whole process tree: its process group, its session and every process that inherited its
  ``ENVKIT_EXEC_ID`` (so ``setsid`` escapes are caught too).
* ``put`` / ``get``: write files from the payload / read one file.
* ``scrub``: kill every process of this uid and empty the writable directories (a clean sandbox
  for the next episode); ``killall`` does only the first part.
* ``serve``: stay up and run requests one after another, each framed on stdin as an 8-byte header
  (spec length, payload length) + spec + payload, each answered on stdout as a 4-byte length +
  reply. Every request runs in a forked child; a request whose child dies gets an error reply.
  One ``docker exec`` then carries many commands, which saves its ~50 ms per command.

Startup time is the cost of every command, so only builtin modules are imported: the spec comes
as ``marshal`` data (the host is trusted) and the reply is a small text header followed by raw
output bytes (the host parses it strictly, it is not trusted)::

    ENVKIT1
    key=value            (one per line; values are numbers, or hex-encoded text)
    <blank line>
    <stdout bytes><stderr bytes>   (lengths given by out_len / err_len)

The supervisor makes itself non-dumpable so the command (same uid) cannot read its memory or file
descriptors, and raises the command's OOM score so the kernel kills the command first.
"""

import _signal as signal  # the `signal` wrapper imports enum: 5-10 ms of startup
import marshal
import os
import select
import sys
import time

MARK = "ENVKIT_EXEC_ID"
GRACE = 0.05  # seconds to keep reading after the command exited while its pipes stay open


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("request ended early")
        buf += chunk
    return bytes(buf)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fork():
    """os.fork, retried for up to ~2 s while the process limit is exhausted (EAGAIN)."""
    delay = 0.01
    for _ in range(12):
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    return os.fork()


def _set_oom_adj(value):
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def _set_dumpable(flag):
    # prctl(PR_SET_DUMPABLE, flag) through the bare _ctypes module: `import ctypes` costs 5 ms.
    try:
        import _ctypes

        prctl = _ctypes.dlsym(_ctypes.dlopen(None, 2), "prctl")
        _ctypes.call_function(prctl, (4, flag, 0, 0, 0))
    except Exception:
        pass


def _non_dumpable():
    _set_dumpable(0)


def _oom_count():
    """OOM kills so far in this sandbox's memory cgroup (v1 or v2), or None if unknown."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


class Capture:
    """Keeps the first and last bytes of a stream, up to ``cap`` in all, and counts the rest."""

    def __init__(self, cap):
        self.cap = cap
        self.tail_cap = cap // 4
        self.head_cap = cap - self.tail_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data):
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap + 65536:
                del self.tail[: len(self.tail) - self.tail_cap]

    def value(self):
        if self.total <= self.cap:
            return bytes(self.head + self.tail)
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        cut = self.total - len(self.head) - len(tail)
        return bytes(self.head) + b"\n[... %d bytes cut by envkit ...]\n" % cut + tail


def _procs():
    """(pid, uid, state, pgrp, sid) of every visible process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
            uid = os.stat("/proc/" + entry).st_uid
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        out.append((int(entry), uid, fields[0], int(fields[2]), int(fields[3])))
    return out


def _has_mark(pid, mark):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return mark in f.read().split(b"\0")
    except OSError:
        return False


def kill_tree(leader, exec_id):
    """SIGKILLs the process group and session of ``leader`` and every process with its mark."""
    mark = ("%s=%s" % (MARK, exec_id)).encode()
    me = os.getpid()
    for _ in range(50):
        hits = 0
        try:
            os.killpg(leader, signal.SIGKILL)
        except OSError:
            pass
        for pid, _uid, state, pgrp, sid in _procs():
            if pid in (me, 1) or state == b"Z":
                continue
            if pgrp == leader or sid == leader or _has_mark(pid, mark):
                try:
                    os.kill(pid, signal.SIGKILL)
                    hits += 1
                except OSError:
                    pass
        if not hits:
            return
        time.sleep(0.01)


def op_run(spec):
    argv = spec["argv"]
    timeout = float(spec["timeout"])
    cap = int(spec["cap"])
    exec_id = spec["id"]
    env = dict(spec["env"])
    env[MARK] = exec_id
    cwd = spec["cwd"]
    oom_before = _oom_count()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    t0 = time.monotonic()
    pid = _fork()
    if pid == 0:  # the command
        try:
            _set_dumpable(1)  # so that its /proc files are its own to write (exec resets it)
            os.setsid()
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            _set_oom_adj(1000)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for name in os.listdir("/proc/self/fd"):
                if int(name) > 2:
                    try:
                        os.close(int(name))
                    except OSError:
                        pass
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except BaseException as e:
            try:
                os.write(2, ("envkit: cannot run %r: %s\n" % (argv[0], e)).encode())
            except OSError:
                pass
        os._exit(127)
    os.close(out_w)
    os.close(err_w)
    os.close(0)
    caps = {out_r: Capture(cap), err_r: Capture(cap)}
    fds = [out_r, err_r, wake_r]
    deadline = t0 + timeout
    status = None
    exited_at = 0.0
    timed_out = False
    while True:
        now = time.monotonic()
        if status is None:
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid:
                status, exited_at = st, now
        if status is not None:
            if len(fds) == 1 or now - exited_at >= GRACE:
                break
            wait = GRACE - (now - exited_at)
        elif now >= deadline:
            timed_out = True
            kill_tree(pid, exec_id)
            _, status = os.waitpid(pid, 0)
            exited_at = time.monotonic()
            continue
        else:
            wait = deadline - now
        try:
            ready, _, _ = select.select(fds, [], [], wait)
        except InterruptedError:
            continue
        for fd in ready:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            data = os.read(fd, 1 << 20)
            if data:
                caps[fd].add(data)
            else:
                fds.remove(fd)
                os.close(fd)
    duration = time.monotonic() - t0
    sig = None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = 128 + sig
    else:
        code = os.WEXITSTATUS(status)
    oom_after = _oom_count()
    out, err = caps[out_r], caps[err_r]
    return {
        "ok": True,
        "exit_code": code,
        "signal": sig,
        "stdout": out.value(),
        "stderr": err.value(),
        "truncated": out.total > cap or err.total > cap,
        "timed_out": timed_out,
        "oom_killed": oom_before is not None and (oom_after or 0) > oom_before,
        "duration": duration,
    }


def _resolve(path, cwd):
    return path if path.startswith("/") else os.path.join(cwd, path)


def op_put(spec):
    written = []
    for item in spec["files"]:
        path = _resolve(item["path"], spec["cwd"])
        size = int(item["size"])
        data = _read_exact(0, size) if size else b""
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            if item.get("mode") is not None:
                os.chmod(path, int(item["mode"]))
        except OSError as e:
            return {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "path": item["path"]}
        written.append(path)
    return {"ok": True, "count": len(written)}


def op_get(spec):
    path = _resolve(spec["path"], spec["cwd"])
    limit = int(spec["max_bytes"])
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "path": spec["path"]}
    return {"ok": True, "stdout": data[:limit], "truncated": len(data) > limit}


def _kill_all(spare=()):
    """SIGKILLs every process of this uid but ourselves and ``spare``.

    Without ``spare``, ``kill(-1)`` does it in one call; it succeeds as long as any other process
    exists (even one we may not signal), so the loop checks what is left instead of relying on
    ESRCH. With ``spare`` (the serving supervisor), each process is stopped first, so that none
    can fork while the others are being killed, then killed.
    """
    for _ in range(500):
        left = _own_procs(spare)
        if not left:
            return
        if not spare:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        else:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in left:
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
        time.sleep(0.002)


def _own_procs(spare=()):
    me, uid = os.getpid(), os.getuid()
    return [
        p
        for p, u, state, _, _ in _procs()
        if u == uid and p not in (1, me) and p not in spare and state != b"Z"
    ]


def _wipe(root):
    """Removes everything under ``root``; returns how many entries could not be removed."""
    left = 0
    try:
        entries = os.listdir(root)
    except OSError:
        return 0
    for name in entries:
        path = os.path.join(root, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    pass
                left += _wipe(path)
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            left += 1
    return left


def _spared(spec):
    # A scrub sent through a channel runs in a child of the serving supervisor: spare it.
    return (os.getppid(),) if spec.get("spare_server") else ()


def op_scrub(spec):
    spare = _spared(spec)
    _kill_all(spare)
    left = sum(_wipe(d) for d in spec.get("dirs", ()))
    if os.path.exists("/usr/bin/ipcrm"):
        pid = os.fork()
        if pid == 0:
            devnull = os.open("/dev/null", os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execv("/usr/bin/ipcrm", ["ipcrm", "--all"])
        os.waitpid(pid, 0)
    procs = _own_procs(spare)
    return {"ok": not procs and not left, "procs_left": len(procs), "entries_left": left}


def op_killall(spec):
    _kill_all()
    return {"ok": True, "procs_left": len(_own_procs())}


def op_probe(spec):
    return {"ok": True, "procs": len(_own_procs()), "uid": os.getuid()}


def _payload_fd(payload):
    """A file descriptor that reads ``payload`` (an anonymous in-memory file)."""
    try:
        fd = os.memfd_create("envkit-stdin")
    except (AttributeError, OSError):
        fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
    _write_all(fd, payload)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _lost(reason):
    return encode_reply({"ok": False, "error": reason})


def serve(spec):
    """Runs framed requests from stdin until EOF (see the module docstring)."""
    while True:
        try:
            header = _read_exact(0, 8)
        except EOFError:
            return
        spec_len = int.from_bytes(header[:4], "big")
        payload_len = int.from_bytes(header[4:], "big")
        request = marshal.loads(_read_exact(0, spec_len))
        payload = _read_exact(0, payload_len)
        try:
            data = _serve_one(request, payload)
        except Exception as e:  # e.g. no process can be forked: answer, and stay in sync
            data = _lost("supervisor: %s: %s" % (type(e).__name__, e))
        _write_all(1, len(data).to_bytes(4, "big") + data)


def _serve_one(request, payload):
    """Runs one request in a forked child; returns the encoded reply."""
    stdin_fd = _payload_fd(payload)
    try:
        reply_r, reply_w = os.pipe()
        pid = _fork()
    except BaseException:
        os.close(stdin_fd)
        raise
    if pid == 0:  # one request; stdin = its payload, reply -> the pipe
        try:
            os.dup2(stdin_fd, 0)
            reply = OPS[request["op"]](request)
        except Exception as e:
            reply = {"ok": False, "error": "supervisor: %s: %s" % (type(e).__name__, e)}
        try:
            _write_all(reply_w, encode_reply(reply))
        finally:
            os._exit(0)
    os.close(stdin_fd)
    os.close(reply_w)
    chunks = []
    while True:
        chunk = os.read(reply_r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(reply_r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if status != 0 or not data.startswith(b"ENVKIT1\n"):
        data = _lost("the request's supervisor was killed (status %d)" % status)
    return data


OPS = {
    "run": op_run,
    "put": op_put,
    "get": op_get,
    "scrub": op_scrub,
    "killall": op_killall,
    "probe": op_probe,
}


def encode_reply(reply):
    """The reply format described in the module docstring."""
    out = reply.pop("stdout", b"")
    err = reply.pop("stderr", b"")
    lines = [b"ENVKIT1"]
    for key, value in sorted(reply.items()):
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str):
            lines.append(
                b"%s=x%s" % (key.encode(), value.encode("utf-8", "replace").hex().encode())
            )
        else:
            lines.append(b"%s=%s" % (key.encode(), repr(value).encode()))
    lines.append(b"out_len=%d" % len(out))
    lines.append(b"err_len=%d" % len(err))
    return b"\n".join(lines) + b"\n\n" + out + err


def main():
    _set_oom_adj(500)  # before turning non-dumpable, which makes /proc/self root-owned
    try:
        n = int.from_bytes(_read_exact(0, 4), "big")
        spec = marshal.loads(_read_exact(0, n))
        _non_dumpable()
        if spec["op"] == "serve":
            serve(spec)
            return
        reply = OPS[spec["op"]](spec)
    except Exception as e:
        reply = {"ok": False, "error": "supervisor: %s: %s" % (type(e).__name__, e)}
    _write_all(1, encode_reply(reply))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter finalization: it only costs time
