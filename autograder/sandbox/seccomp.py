"""The bwrap backend's seccomp filter: system calls no notebook needs fail with EPERM.

Everything else is allowed (an allow-list would break some library's next release); what is denied is the
kernel surface that sandbox escapes and host attacks go through: debugging other processes, mounting, new
namespaces, the kernel keyring, eBPF, perf events, userfaultfd, io_uring, modules, kexec, reboot, swap,
accounting and quotas, file handles, I/O ports, the clock, and personality flags that switch off ASLR. The
filter is built with libseccomp (through `pyseccomp`) in the grader's process and handed to bwrap as a compiled
BPF program (`bwrap --seccomp FD`); bwrap installs it after setting up the sandbox, just before the command
runs, so nothing of the student's can undo it. Podman and docker apply their own default profile instead.
"""

from __future__ import annotations

import errno
import functools
import tempfile

from autograder.errors import SandboxError

# Denied system calls, in groups; each group has a hostile notebook (tests/hostile/syscall_*.ipynb).
DENIED: dict[str, tuple[str, ...]] = {
    "ptrace": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"),
    "mount": ("mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
              "fspick", "mount_setattr", "chroot"),
    "namespaces": ("unshare", "setns"),
    "keyring": ("keyctl", "add_key", "request_key"),
    "bpf": ("bpf",),
    "perf": ("perf_event_open",),
    "userfaultfd": ("userfaultfd",),
    "io_uring": ("io_uring_setup", "io_uring_enter", "io_uring_register"),
    "modules": ("init_module", "finit_module", "delete_module"),
    "reboot": ("kexec_load", "kexec_file_load", "reboot"),
    "swap": ("swapon", "swapoff"),
    "accounting": ("acct", "quotactl", "quotactl_fd"),
    "file_handles": ("open_by_handle_at", "name_to_handle_at"),
    "io_ports": ("iopl", "ioperm"),
    "clock": ("clock_settime", "settimeofday", "clock_adjtime", "adjtimex"),
    "kernel": ("lookup_dcookie", "syslog", "uselib", "vhangup", "nfsservctl", "_sysctl"),
}
# clone() may start a process but not in new namespaces (unshare's twin); clone3 passes its flags in memory
# that a filter cannot read, so it answers ENOSYS, on which glibc falls back to clone().
CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}
# personality() may query (0xffffffff) and set plain Linux personalities, but not these exploit helpers.
PERSONALITY_FLAGS = {
    "ADDR_NO_RANDOMIZE": 0x0040000, "MMAP_PAGE_ZERO": 0x0100000, "ADDR_COMPAT_LAYOUT": 0x0200000,
    "READ_IMPLIES_EXEC": 0x0400000, "ADDR_LIMIT_3GB": 0x8000000,
}
_QUERY_BIT = 0x80000000  # set only in personality(0xffffffff), the query
_UNKNOWN = -1  # libseccomp's __NR_SCMP_ERROR


def denied_calls() -> list[str]:
    """Every system call the filter answers with EPERM whatever its arguments."""
    return [name for group in DENIED.values() for name in group]


@functools.lru_cache(maxsize=1)
def program() -> bytes:
    """The compiled BPF program (for `bwrap --seccomp FD`); built once per grader process."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError) as exc:  # RuntimeError: libseccomp.so.2 not found
        raise SandboxError(f"seccomp: libseccomp unavailable ({exc}): apt-get install libseccomp2; "
                           "pip install pyseccomp") from exc
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    if seccomp.system_arch() == seccomp.Arch.X86_64:
        # The same rules for 32-bit and x32 calls (int 0x80 from a 64-bit process), not a way around them.
        for arch in (seccomp.Arch.X86, seccomp.Arch.X32):
            rules.add_arch(arch)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in denied_calls():
        _deny(rules, seccomp, eperm, name)
    for flag in CLONE_NAMESPACE_FLAGS.values():
        rules.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in PERSONALITY_FLAGS.values():
        rules.add_rule(eperm, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, flag | _QUERY_BIT, flag))
    with tempfile.TemporaryFile() as out:  # libseccomp writes to a file descriptor
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


def _deny(rules, seccomp, action: int, name: str) -> None:
    if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) == _UNKNOWN:
        return  # a call this libseccomp does not know (removed long ago): nothing to deny
    try:
        rules.add_rule(action, name)
    except OSError as exc:
        raise SandboxError(f"seccomp: cannot add a rule for {name}: {exc}") from exc
