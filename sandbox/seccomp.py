"""envkit's seccomp filters: classic BPF programs, built here without libseccomp.

``deny_filter`` is the filter of ``LocalSandbox``.

bubblewrap loads it (``bwrap --seccomp FD``) just before it runs the command, so every process of
the sandbox runs under it. It denies, with ``EPERM``, the system calls sandboxed code has no use
for and that widen the kernel's attack surface or reach outside the sandbox: new namespaces
(``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*`` flag), ``clone3`` (``ENOSYS``, so libc
falls back to ``clone``, whose flags the filter can see), ``ptrace`` and cross-process memory
access, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, the key store (``keyctl``,
``add_key``, ``request_key``), ``bpf``, mounts, kernel modules, ``kexec``, reboot, swap, clocks,
and file handles. A 32-bit system call kills the process; an x32 one fails with ``ENOSYS``.

``supervisor_filter`` is the filter the in-sandbox supervisor (``_supervisor.py``) stacks on the
backend's own one (Docker's default profile, or ``deny_filter`` under bubblewrap) before it runs
anything: it denies ``io_uring_setup/enter/register`` with ``EPERM``. The host builds it once and
hands the bytes to every supervisor it starts; a supervisor that cannot install it (or
``no_new_privs``) refuses to run anything, and the host raises ``SandboxSeccompError``.

Example:
    >>> from envkit.sandbox.seccomp import deny_filter
    >>> program = deny_filter("x86_64")
    >>> len(program) % 8, len(program) // 8 < 4096
    (0, True)
    >>> len(supervisor_filter()) // 8
    6
"""

from __future__ import annotations

import errno
import os
import struct

__all__ = ["DENIED", "SUPPORTED_ARCHES", "deny_filter", "supervisor_filter"]

# Syscall numbers: x86_64 (asm/unistd_64.h) and aarch64 (asm-generic/unistd.h).
_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
        "pidfd_getfd": 438, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "move_mount": 429,
        "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "unshare": 272, "setns": 308, "kexec_load": 246,
        "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
        "reboot": 169, "swapon": 167, "swapoff": 168, "syslog": 103, "acct": 163,
        "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
        "quotactl": 179, "quotactl_fd": 443, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "lookup_dcookie": 212, "fanotify_init": 300, "iopl": 172,
        "ioperm": 173, "vhangup": 153, "uselib": 134, "_sysctl": 156, "create_module": 174,
        "get_kernel_syms": 177, "query_module": 178, "nfsservctl": 180,
        "clone": 56, "clone3": 435,
    },
    "aarch64": {
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
        "pidfd_getfd": 438, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "move_mount": 429,
        "open_tree": 428, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "unshare": 97, "setns": 268, "kexec_load": 104,
        "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "reboot": 142, "swapon": 224, "swapoff": 225, "syslog": 116, "acct": 89,
        "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
        "quotactl": 60, "quotactl_fd": 443, "open_by_handle_at": 265,
        "name_to_handle_at": 264, "lookup_dcookie": 18, "fanotify_init": 262,
        "vhangup": 58, "nfsservctl": 42,
        "clone": 220, "clone3": 435,
    },
}  # fmt: skip

SUPPORTED_ARCHES = tuple(_NUMBERS)
DENIED = tuple(sorted({n for table in _NUMBERS.values() for n in table} - {"clone", "clone3"}))

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_BIT = 0x40000000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
_CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
_CLONE_NEW_ANY |= 0x20000000 | 0x40000000 | 0x00000080

# classic BPF opcodes
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JGT_K = 0x25  # BPF_JMP | BPF_JGT | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K

# io_uring_setup, io_uring_enter, io_uring_register: the same numbers on every architecture
# (asm-generic's unified table, also used by x86_64's and i386's).
_IO_URING = (425, 427)

# offsets in struct seccomp_data (little-endian: the low 32 bits of an argument come first)
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16


def deny_filter(arch: str | None = None) -> bytes:
    """The filter for ``arch`` (default: this machine's) as bytes of ``struct sock_filter``.

    Raises:
        ValueError: there is no syscall table for ``arch`` (supported: x86_64, aarch64).
    """
    arch = arch or os.uname().machine
    if arch not in _NUMBERS:
        raise ValueError(
            f"LocalSandbox has no seccomp filter for the {arch!r} architecture (supported: "
            f"{', '.join(SUPPORTED_ARCHES)}); use the Docker backend on this machine"
        )
    table = _NUMBERS[arch]
    # (code, true-label, false-label, k); labels resolve to relative jumps, None = next
    prog: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _OFF_ARCH),
        (_JEQ_K, None, "kill", _AUDIT_ARCH[arch]),
        (_LD_W_ABS, None, None, _OFF_NR),
    ]
    if arch == "x86_64":
        prog.append((_JGE_K, "enosys", None, _X32_BIT))  # x32 ABI (and nr -1)
    for name in DENIED:
        if name in table:
            prog.append((_JEQ_K, "eperm", None, table[name]))
    prog += [
        (_JEQ_K, "enosys", None, table["clone3"]),
        (_JEQ_K, "clone", None, table["clone"]),
        (_RET_K, None, None, _RET_ALLOW),
    ]
    labels = {
        "clone": len(prog),
        "kill": len(prog) + 3,
        "eperm": len(prog) + 4,
        "enosys": len(prog) + 5,
    }
    prog += [
        (_LD_W_ABS, None, None, _OFF_ARG0),
        (_JSET_K, "eperm", None, _CLONE_NEW_ANY),
        (_RET_K, None, None, _RET_ALLOW),
        (_RET_K, None, None, _RET_KILL_PROCESS),
        (_RET_K, None, None, _RET_ERRNO | errno.EPERM),
        (_RET_K, None, None, _RET_ERRNO | errno.ENOSYS),
    ]
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        out += struct.pack("<HBBI", code, _jump(i, jt, labels), _jump(i, jf, labels), k)
    return bytes(out)


def _jump(at: int, label: str | None, labels: dict[str, int]) -> int:
    if label is None:
        return 0
    offset = labels[label] - at - 1
    if not 0 <= offset <= 255:
        raise AssertionError(f"seccomp jump out of range ({offset})")
    return offset


def supervisor_filter() -> bytes:
    """The supervisor's filter (``struct sock_filter`` bytes): ``io_uring_*`` fail with ``EPERM``.

    The syscall number is compared with its x32 bit cleared, so the x32 variants are denied too.
    It needs no architecture check: the io_uring numbers are the same on every architecture.
    """
    lo, hi = _IO_URING
    prog = (
        (_LD_W_ABS, 0, 0, _OFF_NR),  # A = seccomp_data.nr
        (_AND_K, 0, 0, 0xFFFFFFFF & ~_X32_BIT),  # A &= ~__X32_SYSCALL_BIT
        (_JGE_K, 0, 2, lo),  # A >= lo: next, else allow
        (_JGT_K, 1, 0, hi),  # A > hi: allow, else deny
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_RET_K, 0, 0, _RET_ALLOW),
    )
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)  # native byte order
