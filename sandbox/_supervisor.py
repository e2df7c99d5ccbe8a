# ruff: noqa: UP031, SIM105 - runs inside the sandbox on any Python 3; no contextlib (startup time)
"""envkit's in-sandbox supervisor: runs one operation inside a sandbox and reports it.

This file is executed *inside* the sandbox as ``python3 -I -S -c <source>`` (stdlib only, Python
3.7+, no envkit imports). The host writes a request on its stdin: a 4-byte big-endian length, that
many bytes of spec, then a payload (the command's stdin, or file contents). The supervisor writes
one reply on stdout. Operations:

* ``run``: runs ``argv`` in a new session with stdin = the payload, drains its stdout and stderr
  (keeping the head and tail up to ``cap`` bytes each), and on ``timeout`` kills every process
  the command started: the supervisor is their *child subreaper*, so ``setsid``, double forks and
  ``env -i`` cannot leave its process tree.
* ``put`` / ``get``: write files from the payload (streamed) / read one file, as the sandbox
  user, never following a final symlink, refusing ``/proc``, ``/sys``, ``/dev`` and anything but
  regular files (a FIFO never blocks, a forged reply cannot be written into the reply stream).
* ``scrub``: kill every process of the sandbox user, restore the work dir's mode and empty the
  writable directories; the reply says whether it could prove them empty. ``killall`` does only
  the first part.
* ``serve``: stay up and run requests one after another, each framed on stdin as an 8-byte header
  (spec length, payload length) + spec + payload, each answered on stdout as a 4-byte length +
  reply. Every request runs in a forked child (``killall`` runs in place, so it works even when
  no process can be forked). One ``docker exec`` then carries many commands.

**Privileges.** Started as root (the Docker backend: a container without capabilities but
SETUID, SETGID, SETPCAP and KILL), the supervisor runs the command and every file operation as
the sandbox user (``uid``/``gid`` of the spec) after emptying the capability bounding set, so the
command can neither signal, trace nor read its supervisor. Started as the sandbox user (the
bubblewrap backend) it runs everything as that user and makes itself non-dumpable. Either way,
before anything else, it sets ``no_new_privs`` and stacks the seccomp filter the host sent in the
first spec (``seccomp``: bytes built by ``envkit.sandbox.seccomp.supervisor_filter``, which deny
``io_uring_setup/enter/register``) on the backend's own. It *fails closed*: if it cannot make
itself non-dumpable, or the filter is missing, or either ``prctl`` fails, it runs nothing and
answers every request with ``ok=0``, ``refused`` (what failed), ``errno`` and ``error``; the
host raises ``SandboxSeccompError``. The command runs at a lower CPU priority than its
supervisor, so a timeout is enforced under CPU starvation.

Startup time is the cost of every command, so only builtin modules are imported: the spec comes
as ``marshal`` data (the host is trusted) and the reply is a small text header followed by raw
output bytes (the host parses it strictly, it is not trusted)::

    ENVKIT1
    key=value            (one per line; values are numbers, or hex-encoded text)
    <blank line>
    <stdout bytes><stderr bytes>   (lengths given by out_len / err_len)

Every reply echoes the request's random ``rid``, so the host can tell it from bytes forged into
the stream.
"""

import _signal as signal  # the `signal` wrapper imports enum: 5-10 ms of startup
import _stat
import marshal
import os
import select
import sys
import time

MARK = "ENVKIT_EXEC_ID"
GRACE = 0.05  # seconds to keep reading after the command exited while its pipes stay open
CHUNK = 1 << 20
COMMAND_NICE = 10  # the command's CPU weight is ~10x below its supervisor's
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER = 4, 24, 22, 36
PR_GET_DUMPABLE = 3
PR_SET_NO_NEW_PRIVS, SECCOMP_MODE_FILTER = 38, 2
FILE_OPS_REFUSE = ("/proc", "/sys", "/dev")
FILE_OPS_ALLOW = ("/dev/shm",)


# ---------------------------------------------------------------------------------- low level
def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), CHUNK))
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


_PRCTL = []


def _prctl(*args):
    """prctl(2) through the bare _ctypes module (`import ctypes` costs 5 ms); -1 if unavailable.

    Ints are passed as C ints, bytes as pointers to their buffer.
    """
    try:
        import _ctypes

        if not _PRCTL:
            _PRCTL.append(_ctypes.dlsym(_ctypes.dlopen(None, 2), "prctl"))
        args = tuple(args) + (0,) * (5 - len(args))
        return _ctypes.call_function(_PRCTL[0], args)
    except Exception:
        return -1


def _set_oom_adj(value):
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError:
        pass


def _set_dumpable(flag):
    _prctl(PR_SET_DUMPABLE, flag)


class Refused(Exception):
    """The supervisor will not run anything: ``no_new_privs`` or the seccomp filter failed.

    ``args``: (what failed: "dumpable", "filter", "no_new_privs" or "seccomp"; errno or 0;
    detail).
    """


def _install_filter(prog):
    """Sets ``no_new_privs``, then installs the host's seccomp filter ``prog`` (the bytes of a
    ``struct sock_filter`` array, built by ``envkit.sandbox.seccomp.supervisor_filter``), which
    every child inherits. The backend's own filter stays in force: filters only add up.

    Raises:
        Refused: the filter is missing or malformed, or the kernel refused either step.
    """
    if not isinstance(prog, bytes) or not prog or len(prog) % 8 or len(prog) > 8 * 4096:
        size = len(prog) if isinstance(prog, bytes) else type(prog).__name__
        raise Refused("filter", 0, "the host sent no valid seccomp filter (%s bytes)" % size)
    import ctypes  # here only: 3-10 ms of startup, paid once per supervisor

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.restype = ctypes.c_int
    prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong)
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise Refused("no_new_privs", ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise Refused("seccomp", ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def _refusal(refused, spec=None):
    """The reply to every request of a supervisor whose filter is not installed."""
    what, err, detail = refused.args
    text = "%s (errno %d: %s)" % (detail, err, os.strerror(err)) if err else detail
    reply = {"ok": False, "refused": what, "errno": err, "error": "supervisor: " + text}
    return encode_reply(reply, spec)


def _cap_bounding_set():
    """This process's capability bounding set (from /proc/self/status), or None if unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _drop_privileges(spec):
    """As root: become the sandbox user for good (no capabilities, empty bounding set).

    Does nothing when already running as the sandbox user. Raises if it cannot: nothing a user
    asked for ever runs as root.
    """
    if os.getuid() != 0:
        return
    uid, gid = int(spec.get("uid", -1)), int(spec.get("gid", -1))
    if uid <= 0 or gid < 0:
        raise PermissionError("refusing to run as root: the request names no sandbox uid")
    for cap in range(64):
        if _prctl(PR_CAPBSET_DROP, cap) != 0 and cap > 40:
            break
    if _cap_bounding_set() != 0:  # a failed drop above is not ignored
        raise PermissionError("could not empty the capability bounding set")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise PermissionError("could not drop privileges to uid %d" % uid)


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


# ---------------------------------------------------------------------------------- processes
def _procs():
    """(pid, ppid, state, pgrp, sid) of every visible process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        out.append((int(entry), int(fields[1]), fields[0], int(fields[2]), int(fields[3])))
    return out


def _real_uids(pid):
    """The real, effective and saved uids of ``pid`` (from status: readable even when the
    process made itself non-dumpable), or () if it is gone."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return tuple(int(x) for x in line.split()[1:4])
    except (OSError, ValueError):
        pass
    return ()


def _has_mark(pid, mark):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return mark in f.read().split(b"\0")
    except OSError:
        return False


def _stop_then_kill(pids):
    """SIGSTOPs every pid (so none can fork meanwhile), then SIGKILLs them; returns how many."""
    hits = 0
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
                hits += sig == signal.SIGKILL
            except OSError:
                pass
    return hits


def _reap():
    """Collects every exited child (the subreaper inherits the command's orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


def kill_tree(leader, exec_id):
    """SIGKILLs every descendant of this (subreaper) process, plus the process group, session
    and marked processes of ``leader``, until none is left."""
    mark = ("%s=%s" % (MARK, exec_id)).encode()
    me = os.getpid()
    for _ in range(200):
        try:
            os.killpg(leader, signal.SIGKILL)
        except OSError:
            pass
        procs = [p for p in _procs() if p[2] != b"Z" and p[0] not in (me, 1)]
        children = {}
        for pid, ppid, _state, _pgrp, _sid in procs:
            children.setdefault(ppid, []).append(pid)
        victims, todo = set(), [me]
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in victims:
                    victims.add(child)
                    todo.append(child)
        for pid, _ppid, _state, pgrp, sid in procs:
            if pgrp == leader or sid == leader or (pid not in victims and _has_mark(pid, mark)):
                victims.add(pid)
        if not victims:
            return
        _stop_then_kill(victims)
        _reap()
        time.sleep(0.005)


def _user_procs(uid, spare=()):
    """Live processes of ``uid`` (any of real/effective/saved), but ourselves, init and spare."""
    me = os.getpid()
    out = []
    for pid, _ppid, state, _pgrp, _sid in _procs():
        if pid in (1, me) or pid in spare or state == b"Z":
            continue
        if uid in _real_uids(pid):
            out.append(pid)
    return out


def _kill_user(uid, spare=()):
    """SIGKILLs every process of ``uid`` but ourselves and ``spare``; True if none is left."""
    for _ in range(500):
        left = _user_procs(uid, spare)
        if not left:
            return True
        _stop_then_kill(left)
        time.sleep(0.002)
    return not _user_procs(uid, spare)


def _target_uid(spec):
    """The sandbox user: the spec's uid when running as root, else ourselves."""
    return int(spec["uid"]) if os.getuid() == 0 and "uid" in spec else os.getuid()


# ---------------------------------------------------------------------------------- run
def _spawn(spec, out_w, err_w):
    """Forks the command: new session, low priority, the sandbox user, output to the pipes."""
    env = dict(spec["env"])
    env[MARK] = spec["id"]
    argv = spec["argv"]
    pid = _fork()
    if pid:
        return pid
    try:  # the command
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        _set_oom_adj(1000)
        try:
            os.nice(COMMAND_NICE)
        except OSError:
            pass
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 65536)
        _drop_privileges(spec)
        _set_dumpable(1)  # so that its /proc files are its own to write (exec resets it)
        os.chdir(spec["cwd"])
        os.execvpe(argv[0], argv, env)
    except BaseException as e:
        try:
            os.write(2, ("envkit: cannot run %r: %s\n" % (argv[0], e)).encode())
        except OSError:
            pass
    os._exit(127)


def _collect(pid, spec, out_r, err_r, wake_r, t0):
    """Drains the command's output until it exits (or its timeout kills its tree)."""
    cap = int(spec["cap"])
    caps = {out_r: Capture(cap), err_r: Capture(cap)}
    fds = [out_r, err_r, wake_r]
    deadline = t0 + float(spec["timeout"])
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
            kill_tree(pid, spec["id"])
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:  # reaped by kill_tree
                status = 9
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
            data = os.read(fd, CHUNK)
            if data:
                caps[fd].add(data)
            else:
                fds.remove(fd)
                os.close(fd)
    _reap()
    return status, timed_out, caps[out_r], caps[err_r]


def _run_reply(status, timed_out, out, err, cap, oom_before, duration):
    """The reply of a finished command."""
    sig = None
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = 128 + sig
    else:
        code = os.WEXITSTATUS(status)
    oom_after = _oom_count()
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


def op_run(spec):
    """Runs a command (see the module docstring): spawn, collect, report."""
    oom_before = _oom_count()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the command come back to us
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    t0 = time.monotonic()
    pid = _spawn(spec, out_w, err_w)
    os.close(out_w)
    os.close(err_w)
    os.close(0)
    status, timed_out, out, err = _collect(pid, spec, out_r, err_r, wake_r, t0)
    return _run_reply(
        status, timed_out, out, err, int(spec["cap"]), oom_before, time.monotonic() - t0
    )


# ---------------------------------------------------------------------------------- files
def _resolve(path, cwd):
    return path if path.startswith("/") else os.path.join(cwd, path)


def _refuse_special(path):
    """Raises for paths under /proc, /sys or /dev (but /dev/shm), wherever symlinks lead."""
    real = os.path.realpath(path)
    for top in FILE_OPS_REFUSE:
        if real == top or real.startswith(top + "/"):
            if any(real == a or real.startswith(a + "/") for a in FILE_OPS_ALLOW):
                return
            raise PermissionError("file operations do not touch %s (%s)" % (top, real))


def _open_regular(path, flags):
    """Opens a regular file without following a final symlink and without blocking."""
    _refuse_special(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not _stat.S_ISREG(st.st_mode):
        raise OSError("not a regular file (%s)" % _kind(st.st_mode))
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno in (40, 6):  # ELOOP: a symlink appeared; ENXIO: a FIFO with no reader
            raise OSError("not a regular file (a symlink or FIFO)") from None
        raise
    mode = os.fstat(fd).st_mode
    if not _stat.S_ISREG(mode):
        os.close(fd)
        raise OSError("not a regular file (%s)" % _kind(mode))
    os.set_blocking(fd, True)
    return fd


def _kind(mode):
    for test, name in (
        (_stat.S_ISLNK, "a symlink"),
        (_stat.S_ISFIFO, "a FIFO"),
        (_stat.S_ISSOCK, "a socket"),
        (_stat.S_ISCHR, "a device"),
        (_stat.S_ISBLK, "a device"),
        (_stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "special"


def _copy_in(fd, size):
    """Writes the next ``size`` bytes of stdin to ``fd``, a chunk at a time."""
    left = size
    while left:
        chunk = os.read(0, min(left, CHUNK))
        if not chunk:
            raise EOFError("request ended early")
        _write_all(fd, chunk)
        left -= len(chunk)


def op_put(spec):
    _drop_privileges(spec)
    written = []
    for item in spec["files"]:
        path = _resolve(item["path"], spec["cwd"])
        try:
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            fd = _open_regular(path, os.O_WRONLY | os.O_CREAT)
            try:
                os.ftruncate(fd, 0)
                _copy_in(fd, int(item["size"]))
                if item.get("mode") is not None:
                    os.fchmod(fd, int(item["mode"]))
            finally:
                os.close(fd)
        except OSError as e:
            return {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "path": item["path"]}
        written.append(path)
    return {"ok": True, "count": len(written)}


def op_get(spec):
    _drop_privileges(spec)
    path = _resolve(spec["path"], spec["cwd"])
    limit = int(spec["max_bytes"])
    try:
        fd = _open_regular(path, os.O_RDONLY)
        try:
            chunks, got = [], 0
            while got <= limit:
                chunk = os.read(fd, min(CHUNK, limit + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        finally:
            os.close(fd)
    except OSError as e:
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "path": spec["path"]}
    data = b"".join(chunks)
    return {"ok": True, "stdout": data[:limit], "truncated": len(data) > limit}


# ---------------------------------------------------------------------------------- scrub
def _wipe(root):
    """Removes everything under ``root``; returns how many entries could not be removed (a
    directory that cannot be listed counts)."""
    left = 0
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return 0
    except OSError:
        return 1
    for name in entries:
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
            if _stat.S_ISDIR(st.st_mode):
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


def _restore(modes, uid):
    """chmods the listed dirs back (as their owner); returns how many are not ours or failed."""
    bad = 0
    for path, mode in modes.items():
        try:
            if os.lstat(path).st_uid != uid:
                bad += 1
                continue
            os.chmod(path, int(mode))
        except OSError:
            bad += 1
    return bad


def _spared(spec):
    # A non-root scrub sent through a channel runs in a child of the serving supervisor: spare it.
    return (os.getppid(),) if spec.get("spare_server") and os.getuid() != 0 else ()


def op_scrub(spec):
    uid = _target_uid(spec)
    spare = _spared(spec)
    killed = _kill_user(uid, spare)
    _drop_privileges(spec)
    bad = _restore(spec.get("chmod", {}), uid)
    left = sum(_wipe(d) for d in spec.get("dirs", ()))
    for d in spec.get("dirs", ()):  # prove it: every directory lists, and lists empty
        try:
            left += bool(os.listdir(d))
        except FileNotFoundError:
            pass
        except OSError:
            left += 1
    if os.path.exists("/usr/bin/ipcrm"):
        pid = os.fork()
        if pid == 0:
            devnull = os.open("/dev/null", os.O_RDWR)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.execv("/usr/bin/ipcrm", ["ipcrm", "--all"])
        os.waitpid(pid, 0)
    procs = _user_procs(uid, spare)
    return {
        "ok": killed and not procs and not left and not bad,
        "procs_left": len(procs),
        "entries_left": left,
        "modes_bad": bad,
    }


def op_killall(spec):
    uid = _target_uid(spec)
    _kill_user(uid)  # runs in the serving supervisor itself (or a one-shot one): spares it
    return {"ok": True, "procs_left": len(_user_procs(uid))}


def op_probe(spec):
    return {"ok": True, "procs": len(_user_procs(_target_uid(spec))), "uid": os.getuid()}


# ---------------------------------------------------------------------------------- serve
def _payload_fd(payload):
    """A file descriptor that reads ``payload`` (an anonymous in-memory file)."""
    try:
        fd = os.memfd_create("envkit-stdin")
    except (AttributeError, OSError):
        fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
    _write_all(fd, payload)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _lost(reason, spec=None):
    return encode_reply({"ok": False, "error": reason}, spec)


def serve(spec, refused=None):
    """Runs framed requests from stdin until EOF (see the module docstring); with ``refused``
    (the filter is not installed) answers each with the refusal instead, running nothing."""
    while True:
        try:
            header = _read_exact(0, 8)
        except EOFError:
            return
        spec_len = int.from_bytes(header[:4], "big")
        payload_len = int.from_bytes(header[4:], "big")
        request = marshal.loads(_read_exact(0, spec_len))
        try:
            if refused is not None:
                _drain(payload_len)
                data = _refusal(refused, request)
            elif request.get("op") == "killall":  # in place: works even when fork cannot
                _drain(payload_len)
                data = encode_reply(_dispatch(request), request)
            else:
                data = _serve_one(request, payload_len)
        except Exception as e:  # e.g. no process can be forked: answer, and stay in sync
            data = _lost("supervisor: %s: %s" % (type(e).__name__, e), request)
        _write_all(1, len(data).to_bytes(4, "big") + data)


def _drain(n):
    while n:
        n -= len(_read_exact(0, min(n, CHUNK)))


def _feed(fd, n):
    """Copies the next ``n`` bytes of stdin to ``fd`` (a child's input), then drains the rest
    if the child stopped reading."""
    while n:
        chunk = _read_exact(0, min(n, CHUNK))
        n -= len(chunk)
        if fd is not None:
            try:
                _write_all(fd, chunk)
            except OSError:
                os.close(fd)
                fd = None
    if fd is not None:
        os.close(fd)


def _serve_one(request, payload_len):
    """Runs one request in a forked child; returns the encoded reply."""
    streamed = request.get("op") == "put"
    if streamed:
        stdin_fd, feed_fd = os.pipe()
    else:
        stdin_fd, feed_fd = _payload_fd(_read_exact(0, payload_len)), None
    try:
        reply_r, reply_w = os.pipe()
        pid = _fork()
    except BaseException:
        os.close(stdin_fd)
        if feed_fd is not None:
            os.close(feed_fd)
        _drain(payload_len if streamed else 0)
        raise
    if pid == 0:  # one request; stdin = its payload, reply -> the pipe, nothing on our stdout
        try:
            os.dup2(stdin_fd, 0)
            devnull = os.open("/dev/null", os.O_RDWR)
            os.dup2(devnull, 1)
            os.close(devnull)
            for fd in (stdin_fd, feed_fd):
                if fd is not None:
                    os.close(fd)
            reply = _dispatch(request)
        except Exception as e:
            reply = {"ok": False, "error": "supervisor: %s: %s" % (type(e).__name__, e)}
        try:
            _write_all(reply_w, encode_reply(reply, request))
        finally:
            os._exit(0)
    os.close(stdin_fd)
    os.close(reply_w)
    if streamed:
        _feed(feed_fd, payload_len)
    chunks = []
    while True:
        chunk = os.read(reply_r, CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(reply_r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if status != 0 or not data.startswith(b"ENVKIT1\n"):
        data = _lost("the request's supervisor was killed (status %d)" % status, request)
    return data


OPS = {
    "run": op_run,
    "put": op_put,
    "get": op_get,
    "scrub": op_scrub,
    "killall": op_killall,
    "probe": op_probe,
}


def _dispatch(spec):
    op = OPS.get(spec.get("op"))
    if op is None:
        return {"ok": False, "error": "supervisor: unknown op %r" % (spec.get("op"),)}
    return op(spec)


def encode_reply(reply, spec=None):
    """The reply format described in the module docstring; echoes the request's ``rid``."""
    out = reply.pop("stdout", b"")
    err = reply.pop("stderr", b"")
    if spec is not None and spec.get("rid"):
        reply["rid"] = str(spec["rid"])
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
    spec = None
    try:
        n = int.from_bytes(_read_exact(0, 4), "big")
        spec = marshal.loads(_read_exact(0, n))
        try:
            _set_dumpable(0)  # the command (the same uid under bubblewrap) cannot read us
            if _prctl(PR_GET_DUMPABLE) != 0:
                raise Refused("dumpable", 0, "prctl(PR_SET_DUMPABLE, 0) did not apply")
            _install_filter(spec.get("seccomp"))
        except Refused as refused:  # fail closed: run nothing, answer every request with why
            if spec.get("op") == "serve":
                serve(spec, refused)
                return
            _write_all(1, _refusal(refused, spec))
            return
        if spec["op"] == "serve":
            serve(spec)
            return
        reply = _dispatch(spec)
    except Exception as e:
        reply = {"ok": False, "error": "supervisor: %s: %s" % (type(e).__name__, e)}
    _write_all(1, encode_reply(reply, spec))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter finalization: it only costs time
