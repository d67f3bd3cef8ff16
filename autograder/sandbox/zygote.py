"""The fork backend's server and client: Python libraries imported once, each run forked into a fresh sandbox.

Every sandbox run of the bwrap backend starts a new Python and imports papermill, ipykernel, numpy, pandas,
matplotlib and scikit-learn again: 1.4 to 1.9 s of CPU per submission before its first own line runs. The
fork backend (autograder/sandbox/fork.py) starts this script once per grading run, as root, outside any
sandbox: it imports the libraries named on its command line and then only forks. No student code and no run's
data ever enter this process: it accepts a connection and forks at once; the child reads the run's request
(paths, limits, the seccomp program) and builds the sandbox that bwrap would build, then runs the command:

    child (host PID namespace, root): joins the run's cgroups, unshares mount, PID, network, IPC, UTS and
    cgroup namespaces, forks the sandbox's first process and passes its exit status back to the client;
    sandbox PID 1 (root, no way back out): hostname, loopback up, a new root of read-only binds and size-capped
    tmpfs (pivot_root; the host's root is detached), rlimits, then every capability dropped (bounding set
    too), the run's uid and gid, no_new_privs, the seccomp filter, the run's environment and nothing else
    open; then `python -I -c CODE ARGS` or `python -I FILE ARGS` runs in this already-warm interpreter (the
    libraries stay imported: the run's runner forks its kernel from it), any other command is exec'd.

The client (`zygote.py --connect SOCKET REQUEST`) is the process the backend supervises: it hands its standard
output and error to the server with the request's path, waits, and exits as the sandbox did (killed by the
signal that killed it; SIGKILL when the whole run was killed through its cgroup, the child included).

Standard library only at import: this file is run as a script (`python -I`), never imported by the grader's
processes, and it imports nothing of the grader, so that `import autograder` in a sandbox finds only the runner.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import traceback

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 24, 38, 22, 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
LAST_CAPABILITY = 63  # PR_CAPBSET_DROP answers EINVAL past the kernel's last one
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
BASE = "/tmp"  # in the child's own mount namespace: the tmpfs that holds the new root while it is built
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
MAX_REQUEST_BYTES = 1 << 20
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
EXIT_SETUP_FAILED = 125  # the sandbox could not be built: nothing of the command ran

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A step of building the sandbox failed: the run ends with EXIT_SETUP_FAILED and this message."""


# ---- server ----------------------------------------------------------------------------------------------


def serve(socket_path: str, masked: list[str], preload: list[str]) -> None:
    """Import `preload`, listen on `socket_path` (root only), print `ready`, fork a child per connection until
    standard input closes (the backend's end of the pipe: the grader exited)."""
    import importlib

    _site_without(masked)
    # As the runner does (autograder/inside/runner.py): jsonschema under nbformat would build this grammar at
    # import, 1.9 s here, for formats no notebook uses.
    sys.modules.setdefault("rfc3987_syntax", None)
    # OpenBLAS starts its threads at import, and a process with threads cannot fork safely: one thread each
    # here and in the command; a kernel forked from it sets its thread pools from its environment (runner.py).
    wanted = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    for name in preload:
        importlib.import_module(name)
    for name, value in wanted.items():
        os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:  # fork copies only the calling thread: a library's thread pool would be lost
        sys.exit(f"zygote: {len(threads)} threads after importing {', '.join(preload)}: cannot fork safely")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel; none is waited for
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)
    listener.bind(socket_path)
    os.umask(old_mask)
    listener.listen(64)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 1):
            return
        if listener in readable:
            connection, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                os._exit(_child(connection))
            connection.close()


def _site_without(masked: list[str]) -> None:
    """What `site` does at start-up (this script runs with -S), except the .pth files a sandbox masks (an
    editable install's import hook, which would point `import autograder` at the repository)."""
    import site

    original = site.addpackage
    skipped = {os.path.realpath(path) for path in masked}

    def addpackage(sitedir, name, known_paths):
        if os.path.realpath(os.path.join(sitedir, name)) in skipped:
            return known_paths
        return original(sitedir, name, known_paths)

    site.addpackage = addpackage
    try:
        site.main()
    finally:
        site.addpackage = original


def _child(connection: socket.socket) -> int:
    """Read the request, join its cgroups, unshare, fork the sandbox's PID 1 and report its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    try:
        request, out, err = _receive(connection)
        for procs in request["procs_files"]:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
                             | CLONE_NEWCGROUP), "unshare")
        with open(request["seccomp_file"], "rb") as handle:
            request["seccomp"] = handle.read()
    except (OSError, SetupError, KeyError, ValueError) as exc:
        _report(connection, EXIT_SETUP_FAILED, f"zygote: cannot start the run: {exc}")
        return 0
    pid = os.fork()
    if pid == 0:
        connection.close()
        os.dup2(out, 1)
        os.dup2(err, 2)
        _sandbox_main(request)  # never returns
    os.close(out)
    os.close(err)
    _, status = os.waitpid(pid, 0)
    _report(connection, os.waitstatus_to_exitcode(status))
    return 0


def _receive(connection: socket.socket) -> tuple[dict, int, int]:
    fds = array.array("i")
    message, ancillary, _, _ = connection.recvmsg(4096, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(fds) != 2:
        raise SetupError("the client did not pass its standard output and error")
    with open(message.decode(), "rb") as handle:
        request = json.loads(handle.read(MAX_REQUEST_BYTES))
    return request, fds[0], fds[1]


def _report(connection: socket.socket, code: int, message: str = "") -> None:
    try:
        connection.sendall(struct.pack("i", code) + message.encode()[:4000])
    except OSError:
        pass  # the client is gone (killed with its run)


# ---- inside the sandbox (PID 1 of its namespace) ----------------------------------------------------------


def _sandbox_main(request: dict) -> None:
    code = EXIT_SETUP_FAILED
    try:
        _enter(request)
        code = _run(request["argv"], request["environment"], request["interpreter"])
    except SetupError as exc:
        print(f"zygote: cannot build the sandbox: {exc}", file=sys.stderr)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:  # the command's own failure, as `python` would show it
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _enter(request: dict) -> None:
    """Everything bwrap and setpriv do for the bwrap backend, in the same order (see the module docstring)."""
    name = b"sandbox"
    _check(_libc.sethostname(name, len(name)), "sethostname")
    _loopback_up()
    _build_root(request)
    _set_rlimits(request["rlimits"])
    os.chdir(request["scratch"])
    _drop_privileges(request["uid"])
    _install_seccomp(request["seccomp"])
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.closerange(3, min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20))
    os.environ.clear()
    os.environ.update(request["environment"])


def _run(argv: list[str], environment: dict, interpreter: str) -> int:
    """`python -I -c CODE ARGS` and `python -I FILE ARGS` in this interpreter, as `python -I` would run them;
    anything else exec'd."""
    if argv[:2] == ["python", "-I"] and len(argv) >= 3:
        import runpy

        if argv[2] == "-c" and len(argv) >= 4:
            sys.argv = ["-c", *argv[4:]]
            exec(compile(argv[3], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        elif not argv[2].startswith("-"):
            sys.argv = argv[2:]
            runpy.run_path(argv[2], run_name="__main__")
        else:
            raise SetupError(f"python option {argv[2]!r} is not run in a warm interpreter")
        return 0
    command = [interpreter if argv[0] == "python" else argv[0], *argv[1:]]
    os.execvpe(command[0], command, environment)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        answer = fcntl.ioctl(probe, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", answer)[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _build_root(request: dict) -> None:
    """A new root made only of what the request lists; the host's root detached afterwards."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    _mount("tmpfs", BASE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.chdir(BASE)
    os.mkdir("newroot", 0o755)
    _mount("newroot", "newroot", None, MS_BIND | MS_REC)
    os.mkdir("oldroot", 0o755)
    _pivot_root(b".", b"oldroot")
    os.chdir("/")
    for step in request["mounts"]:
        _apply(step)
    _check(_libc.umount2(b"/oldroot", MNT_DETACH), "umount oldroot")
    os.chdir("/newroot")
    _pivot_root(b".", b".")
    _check(_libc.umount2(b".", MNT_DETACH), "umount base")
    os.chdir("/")


def _pivot_root(new_root: bytes, put_old: bytes) -> None:
    if SYS_PIVOT_ROOT is None:
        raise SetupError(f"pivot_root: no system call number known for {os.uname().machine}")
    _check(_libc.syscall(SYS_PIVOT_ROOT, new_root, put_old), "pivot_root")


def _apply(step: dict) -> None:
    """One mount step, as the backend listed it (bwrap's option of the same name in brackets)."""
    kind, target = step["kind"], "/newroot" + step["target"]
    if kind == "dir":  # [--dir]
        os.makedirs(target, exist_ok=True)
        os.chmod(target, int(step["mode"], 8))
    elif kind == "symlink":  # [--symlink]
        os.symlink(step["source"], target)
    elif kind == "bind":  # [--bind, --ro-bind]
        _bind("/oldroot" + step["source"], target, step["writable"])
    elif kind == "tmpfs":  # [--perms MODE --size BYTES --tmpfs]
        os.makedirs(target, exist_ok=True)
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={step['mode']},size={step['size']}")
    elif kind == "proc":  # [--proc]: this PID namespace's processes only
        os.makedirs(target, exist_ok=True)
        _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    elif kind == "dev":  # [--dev]: a few device nodes, a private devpts, no host devices
        _make_dev(target)
    else:
        raise SetupError(f"unknown mount step {kind!r}")


def _bind(source: str, target: str, writable: bool, device: bool = False) -> None:
    if not os.path.lexists(target):
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if device else MS_NODEV) | (0 if writable else MS_RDONLY)
    for mountpoint in [target, *_submounts(target)]:  # read-only reaches the folders mounted below too
        _mount(None, mountpoint, None, flags)


def _submounts(target: str) -> list[str]:
    found = []
    with open("/oldroot/proc/self/mountinfo") as table:  # this namespace's table, as seen from the new root
        for line in table:
            point = _unescape(line.split()[4])
            if point.startswith(target + "/"):
                found.append(point)
    return found


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (\\040 for a space) undone; no codec is imported here (the host's root,
    where Python's library lies, is not reachable while the new root is built)."""
    parts = field.split("\\")
    return parts[0] + "".join(chr(int(part[:3], 8)) + part[3:] for part in parts[1:])


def _make_dev(target: str) -> None:
    os.makedirs(target, exist_ok=True)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID, "mode=0755")
    for name in DEVICES:
        _bind(f"/oldroot/dev/{name}", f"{target}/{name}", writable=True, device=True)
    for name, link in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd"), ("ptmx", "pts/ptmx")):
        os.symlink(link, f"{target}/{name}")
    os.mkdir(f"{target}/shm", 0o755)
    os.mkdir(f"{target}/pts", 0o755)
    _mount("devpts", f"{target}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")


def _set_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _drop_privileges(uid: int) -> None:
    """As `setpriv --reuid --regid --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs`."""
    for capability in range(LAST_CAPABILITY + 1):
        if _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # EINVAL: none
            _check(-1, f"drop capability {capability}")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another uid: permitted, effective and ambient sets are emptied
    if os.getuid() != uid or os.geteuid() != uid or os.getegid() != uid:
        raise SetupError("uid or gid did not change")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_seccomp(program: bytes) -> None:
    """The grader's compiled filter (autograder/sandbox/seccomp.py), as bwrap --seccomp installs it."""
    if not program or len(program) % 8:
        raise SetupError("the seccomp program is empty or not whole BPF instructions")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = (lambda text: text.encode() if text is not None else None)
    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {source or ''} {target}")


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(error)}")


# ---- client ------------------------------------------------------------------------------------------------


def connect(socket_path: str, request_path: str) -> None:
    """Hand fds 1 and 2 and the request to the server, wait, and end as the sandbox ended."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(socket_path)
        fds = array.array("i", [1, 2])
        connection.sendmsg([request_path.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    if len(answer) < 4:  # the child was killed with the rest of the run (its cgroup)
        os.kill(os.getpid(), signal.SIGKILL)
    code = struct.unpack("i", answer[:4])[0]
    if answer[4:]:
        os.write(2, answer[4:] + b"\n")
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--connect"]:
        connect(sys.argv[2], sys.argv[3])
    else:
        arguments = sys.argv[2:]
        serve(sys.argv[1], [a.removeprefix("--mask=") for a in arguments if a.startswith("--mask=")],
              [a for a in arguments if not a.startswith("--mask=")])
