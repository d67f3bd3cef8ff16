"""Run a command in a small virtual machine whose kernel offers only the unified cgroup v2 hierarchy.

The development machines are cgroup v1 hosts; this proves the sandbox's limits on a cgroup v2 kernel. The kernel
comes from a Debian package, downloaded with apt-get and unpacked into a cache (never installed as the host's
kernel), and boots with an initramfs built here from busybox-static and the kernel's own modules:

- `kvm`: qemu-system-x86 with KVM boots linux-image-amd64; the host's folders come in over virtio 9p.
- `uml`: user-mode-linux, Debian's kernel built as a host program (no /dev/kvm needed, one CPU); the host's
  folders come in over hostfs. For hosts whose /dev/kvm runs only paravirtualised guests (PVM, as on our
  development machines), where linux-image-amd64 cannot boot. It comes from Debian's testing suite with that
  suite's C library beside it (see UML_SUITE).
- `tcg`: like `kvm` but emulated by qemu; ten to forty times slower, for trying the kvm path by hand only.

The VM's root is the host's own root, shared read-only with a tmpfs overlay for writes, so the VM has exactly the
host's Python, venv, bubblewrap, podman and TeX, and the project at the same path. The command runs as root in the
leaf group /sys/fs/cgroup/tests, whose memory, pids, cpu and io controllers are enabled; its output and exit code
come back through a second, writable share of a folder on the host. See docs/cgroup2-vm.md.

By hand:  .venv/bin/python tests/vm/cgroup2_vm.py -- .venv/bin/python -m pytest tests/test_sandbox.py -q
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Outside the work tree: tests that snapshot the repository (the hostile corpus) must not see the cache grow.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "notebook-grader" / "cgroup2-vm"
# The kernel's command line: no v1 controller at all, the unified hierarchy only (the systemd switch is inert
# here, there is no systemd, but names the intent for anyone who boots the image elsewhere).
PR_SET_PDEATHSIG = 1
KERNEL_ARGS = ["quiet", "loglevel=3", "panic=-1", "rdinit=/init", "systemd.unified_cgroup_hierarchy=1",
               "cgroup_no_v1=all"]


class VmError(Exception):
    """Raised when the VM cannot be built or booted, or ends without reporting its command's exit code."""


@dataclass(frozen=True)
class Machine:
    """One way to boot: the Debian package that holds the kernel, where it sits inside, what the VM loads."""

    name: str
    package: str  # a name, or a metapackage whose versioned dependency is the kernel
    kernel_glob: str
    modules_glob: str  # the folder holding kernel/
    modules: tuple[str, ...]
    transport: str  # how the host's folders come in: 9p or hostfs
    host_tools: tuple[tuple[str, str], ...]  # (program, Debian package) needed on the host
    # The Debian suite the package comes from, through a private package index in the cache ("": the host's own
    # sources). A kernel from another suite runs as a host program with that suite's C library (`libc6`).
    suite: str = ""


_QEMU = (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static"))
# Debian 12's user-mode Linux (6.1) and Debian 13's (6.12) cannot start a single guest process on our Linux 6.18
# hosts (Intel CPUs with AMX): the host's ptrace refuses their floating-point register set ("ptrace set fp regs
# failed, errno = 14") and init dies with SIGSEGV. 7.2, in testing, sizes that set from the host and runs.
UML_SUITE = "forky"
DEBIAN_MIRROR = "http://deb.debian.org/debian"  # when the host's apt sources name no Debian mirror
# virtio-pci carries the 9p shares and the entropy source; overlay stacks a tmpfs on the read-only host root.
_QEMU_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_rng")
MACHINES = {
    "kvm": Machine("kvm", "linux-image-amd64", "boot/vmlinuz-*", "lib/modules/*", _QEMU_MODULES, "9p", _QEMU),
    "tcg": Machine("tcg", "linux-image-amd64", "boot/vmlinuz-*", "lib/modules/*", _QEMU_MODULES, "9p", _QEMU),
    "uml": Machine("uml", "user-mode-linux", "usr/bin/linux.uml", "usr/lib/uml/modules/*", ("overlay",), "hostfs",
                   (("busybox", "busybox-static"), ("patchelf", "patchelf")), suite=UML_SUITE),
}


@dataclass
class Image:
    """A bootable kernel and initramfs in the cache, named by the Debian package they come from."""

    machine: Machine
    kernel: Path
    initrd: Path
    package: str  # name=version
    built_seconds: float = 0.0  # 0 when both came from the cache


@dataclass
class VmResult:
    """What a command did inside the VM: exit code, its output, the VM's facts and console, and timings."""

    returncode: int
    output: str
    facts: dict[str, str]
    console: str
    seconds: float
    image: Image


def kvm_unusable_reason() -> str | None:
    """Why qemu cannot boot Debian's kernel with KVM here, or None where it can."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as exc:
        return f"/dev/kvm not usable here ({exc.strerror})"
    if not any(Path("/sys/module", m).is_dir() for m in ("kvm_intel", "kvm_amd")):
        # e.g. kvm_pvm: guests must be built for paravirtualisation; linux-image-amd64 hangs at its first step
        return "/dev/kvm here runs no hardware-virtualised guests (no kvm_intel or kvm_amd)"
    return None


def choose_machine() -> Machine:
    """KVM where the host's /dev/kvm can boot Debian's kernel, user-mode Linux everywhere else."""
    return MACHINES["uml" if kvm_unusable_reason() else "kvm"]


def missing_host_packages(machine: Machine) -> list[str]:
    """Debian packages the machine needs on the host that are not installed (`make system-packages`)."""
    return [package for tool, package in machine.host_tools if not shutil.which(tool)]


def ensure_image(machine: Machine, cache: Path = CACHE) -> Image:
    """The machine's kernel and initramfs for the current Debian package, built into `cache` unless there."""
    started = time.monotonic()
    apt = _apt_options(machine.suite, cache)
    package, version = _package_version(machine, cache, apt)
    folder = cache / machine.name / f"{package}_{version}"
    built = False
    if not (folder / "kernel").is_file():
        _unpack_kernel(machine, package, version, folder, apt)
        built = True
    initrd = folder / f"initramfs-{_initramfs_key(folder / 'modules')}.cpio"
    if not initrd.is_file():
        _write_initramfs(initrd, folder / "modules")
        built = True
    return Image(machine=machine, kernel=folder / "kernel", initrd=initrd, package=f"{package}={version}",
                 built_seconds=time.monotonic() - started if built else 0.0)


def run(argv: list[str], cwd: Path = REPO, machine: Machine | None = None, timeout: float = 1800,
        memory_mb: int = 6144, cpus: int = 2, live: bool = False, cache: Path = CACHE) -> VmResult:
    """Boot the VM, run `argv` in `cwd` as root in /sys/fs/cgroup/tests, and return what it did.

    The console (kernel messages, then the command's output as it comes) is kept in the result, or with `live`
    shown on this process's standard output instead. Raises VmError when the VM ends without the command's
    exit code.
    """
    machine = machine or choose_machine()
    if machine.name == "kvm" and (reason := kvm_unusable_reason()):
        raise VmError(reason)
    if missing := missing_host_packages(machine):
        raise VmError(f"missing Debian packages {' '.join(missing)}: run `make system-packages`")
    image = ensure_image(machine, cache)
    with tempfile.TemporaryDirectory(prefix="cgroup2-vm-") as scratch:
        results = Path(scratch) / "results"  # the VM sees only this folder writable
        results.mkdir()
        (results / "command.sh").write_text(f"cd {shlex.quote(str(cwd))} || exit 127\nexec {shlex.join(argv)}\n")
        console = None if live else Path(scratch) / "console.log"
        started = time.monotonic()
        _boot(_boot_command(image, results, memory_mb, cpus), timeout, console, Path(scratch))
        seconds = time.monotonic() - started
        console_text = console.read_text(errors="replace") if console and console.is_file() else ""
        return _collect(results, image, seconds, console_text)


def _boot_command(image: Image, results: Path, memory_mb: int, cpus: int) -> list[str]:
    args = [*KERNEL_ARGS, f"vm.transport={image.machine.transport}", f"vm.results={results}"]
    if image.machine.name == "uml":  # one CPU: Debian builds user-mode Linux without SMP
        return [str(image.kernel), f"mem={memory_mb}M", f"initrd={image.initrd}", "con=null", "con0=null,fd:1",
                *args]
    accel = ["-enable-kvm", "-cpu", "host"] if image.machine.name == "kvm" else ["-accel", "tcg,thread=multi",
                                                                                "-cpu", "max"]
    return [
        "qemu-system-x86_64", *accel, "-smp", str(cpus), "-m", f"{memory_mb}M", "-nodefaults", "-no-user-config",
        "-display", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", " ".join(["console=ttyS0", *args]),
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=passthrough,multidevs=remap",
        "-device", "virtio-rng-pci",
    ]


def _boot(argv: list[str], timeout: float, console: Path | None, scratch: Path) -> None:
    # user-mode Linux keeps its memory in a file under TMPDIR, and runs each guest process as a host process
    # in the VM's own session: on a timeout the whole process group goes, and the VM dies with this process.
    environment = {**os.environ, "TMPDIR": "/dev/shm" if Path("/dev/shm").is_dir() else str(scratch)}
    with open(console, "wb") if console else contextlib.nullcontext() as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT if out else None, env=environment,
                                   start_new_session=True, preexec_fn=_die_with_parent)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise VmError(f"the VM did not finish within {timeout:.0f} s (killed)") from exc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _collect(results: Path, image: Image, seconds: float, console: str) -> VmResult:
    rc_file = results / "rc"
    if not rc_file.is_file():
        tail = "\n".join(console.splitlines()[-15:])
        raise VmError(f"the VM ended without the command's exit code; console tail:\n{tail}")
    facts_file, output_file = results / "facts", results / "output.log"
    facts = {}
    if facts_file.is_file():
        facts = dict(line.split("=", 1) for line in facts_file.read_text().splitlines() if "=" in line)
    return VmResult(returncode=int(rc_file.read_text().strip()),
                    output=output_file.read_text(errors="replace") if output_file.is_file() else "",
                    facts=facts, console=console, seconds=seconds, image=image)


# --- building the image ------------------------------------------------------------------------------------

def _package_version(machine: Machine, cache: Path, apt: list[str]) -> tuple[str, str]:
    """The kernel package (a metapackage's versioned dependency) and its candidate version, read with the apt
    options `apt`."""
    for attempt in range(2):
        package = machine.package
        if package.endswith("-amd64"):
            match = re.search(r"Depends: (linux-image-[0-9]\S*)", _quiet(["apt-cache", *apt, "depends", package]))
            package = match[1] if match else ""
        show = _quiet(["apt-cache", *apt, "show", "--no-all-versions", package]) if package else ""
        version = re.search(r"^Version: (\S+)", show, re.M)
        if version:
            return package, version[1]
        if attempt == 0:  # no package lists yet on a fresh machine
            _quiet(["apt-get", *apt, "update", "-qq"])
    cached = sorted((cache / machine.name).glob("*/kernel"))
    if cached:  # offline: the last kernel unpacked still boots
        package, _, version = cached[-1].parent.name.partition("_")
        return package, version
    raise VmError(f"cannot resolve {machine.package} with apt-cache (run `apt-get update`)")


def _apt_options(suite: str, cache: Path) -> list[str]:
    """apt options that read `suite`'s package index from the cache instead of the host's sources, which stay
    untouched; none for the host's own suite."""
    if not suite:
        return []
    root = cache / "apt" / suite
    for folder in (root / "lists" / "partial", root / "cache" / "archives" / "partial"):
        folder.mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    sources.write_text(f"deb {_debian_mirror()} {suite} main\n")
    return ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={root / 'lists'}", "-o", f"Dir::Cache={root / 'cache'}"]


def _debian_mirror() -> str:
    """The Debian mirror the host's apt sources use (a local mirror or proxy stays in use)."""
    targets = _quiet(["apt-get", "indextargets", "--format", "$(SITE)"]).split()
    return next((site for site in targets if site.rstrip("/").endswith("/debian")), DEBIAN_MIRROR)


def _unpack_kernel(machine: Machine, package: str, version: str, folder: Path, apt: list[str]) -> None:
    """Download the kernel package, unpack it aside and keep only the kernel and the modules the VM loads."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="unpack-", dir=folder.parent) as tmp:
        work = Path(tmp)
        _download_unpacked(apt, package, version, work / "root")
        kernel = next((work / "root").glob(machine.kernel_glob))
        tree = next((work / "root").glob(machine.modules_glob)) / "kernel"
        staging = work / "image"
        (staging / "modules").mkdir(parents=True)
        order = _module_order(tree, machine.modules)
        for name, path in order:
            shutil.copy2(path, staging / "modules" / f"{name}.ko")
        (staging / "modules" / "order").write_text("\n".join(name for name, _ in order) + "\n")
        shutil.copy2(kernel, staging / "kernel")
        if machine.suite:
            _with_suite_libc(staging, folder, work, apt)
        for old in folder.parent.iterdir():  # one kernel per machine: a package update replaces the last
            if old.name != work.name:
                shutil.rmtree(old)
        staging.rename(folder)  # atomic: a half-built folder never looks complete


def _download_unpacked(apt: list[str], package: str, version: str, target: Path) -> None:
    """`apt-get download` the package (with the apt options `apt`) and unpack it into target."""
    wanted = f"{package}={version}" if version else package  # no version: the suite's candidate
    with tempfile.TemporaryDirectory(prefix="download-", dir=target.parent) as tmp:
        download = subprocess.run(["apt-get", *apt, "download", wanted], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if download.returncode or not debs:
            raise VmError(f"apt-get download {wanted} failed: {download.stderr.strip()[-300:]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(target)], check=True)


def _with_suite_libc(staging: Path, folder: Path, work: Path, apt: list[str]) -> None:
    """Put the suite's C library beside the kernel and point the kernel at it (interpreter and run path), as
    it will lie in `folder`: a kernel built for a newer Debian than the host's needs its newer glibc."""
    _download_unpacked(apt, "libc6", "", work / "libc6")
    libraries = work / "libc6" / "usr" / "lib" / "x86_64-linux-gnu"
    (staging / "lib").mkdir()
    for name in ("ld-linux-x86-64.so.2", "libc.so.6"):  # all that linux.uml links
        shutil.copy2(libraries / name, staging / "lib" / name)
    subprocess.run(["patchelf", "--set-interpreter", str(folder / "lib" / "ld-linux-x86-64.so.2"),
                    "--set-rpath", str(folder / "lib"), str(staging / "kernel")], check=True, capture_output=True)


def _module_order(tree: Path, wanted: tuple[str, ...]) -> list[tuple[str, Path]]:
    """The wanted modules and what they depend on (from each module's .modinfo), dependencies first."""
    index = {path.stem.replace("-", "_"): path for path in tree.rglob("*.ko")}
    order: dict[str, Path] = {}

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in index:
            raise VmError(f"kernel module {name} is not in the kernel package (built in, or renamed?)")
        found = re.search(rb"\0depends=([^\0]*)\0", index[name].read_bytes())
        for dependency in filter(None, (found[1].decode() if found else "").split(",")):
            visit(dependency.replace("-", "_"))
        order[name] = index[name]

    for name in wanted:
        visit(name)
    return list(order.items())


def _busybox() -> Path:
    found = shutil.which("busybox")
    if not found:
        raise VmError("busybox not found: run `make system-packages` (Debian's busybox-static)")
    return Path(found).resolve()


def _initramfs_key(modules: Path) -> str:
    """Rebuild the initramfs whenever the scripts, the busybox binary or the modules change."""
    digest = hashlib.sha256()
    for path in [HERE / "init.sh", HERE / "stage2.sh", _busybox(), *sorted(modules.iterdir())]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def _write_initramfs(target: Path, modules: Path) -> None:
    entries: list[tuple[str, int, bytes, int]] = [  # (path, mode, data, device)
        *[(d, 0o040755, b"", 0) for d in ("bin", "dev", "proc", "sys", "mnt", "modules")],
        ("dev/console", 0o020600, b"", os.makedev(5, 1)),  # init's first stdout, before devtmpfs
        ("bin/busybox", 0o100755, _busybox().read_bytes(), 0),
        ("init", 0o100755, (HERE / "init.sh").read_bytes(), 0),
        ("stage2.sh", 0o100644, (HERE / "stage2.sh").read_bytes(), 0),
        *[(f"modules/{p.name}", 0o100644, p.read_bytes(), 0) for p in sorted(modules.iterdir())],
    ]
    for old in target.parent.glob("initramfs-*.cpio"):
        old.unlink()
    partial = target.with_suffix(".partial")
    partial.write_bytes(_newc_archive(entries))
    partial.rename(target)


def _newc_archive(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A cpio archive in the kernel's 'newc' format (what an initramfs is)."""
    def pad(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    out = bytearray()
    for inode, (name, mode, data, device) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], start=1):
        fields = [inode, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0,
                  os.major(device), os.minor(device), len(name) + 1, 0]
        out += pad(b"070701" + "".join(f"{value:08x}" for value in fields).encode() + name.encode() + b"\0")
        out += pad(data)
    return bytes(out)


def _quiet(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


# --- by hand -----------------------------------------------------------------------------------------------

def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a command as root in a cgroup v2 VM booted from a Debian "
                                                 "kernel, with the host's root (and so this project) mounted in.")
    parser.add_argument("--machine", choices=sorted(MACHINES), help="default: kvm where usable, else uml")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the VM is killed")
    parser.add_argument("--memory-mb", type=int, default=6144)
    parser.add_argument("--cpus", type=int, default=2, help="qemu only: user-mode Linux has one")
    parser.add_argument("--build-only", action="store_true", help="build or check the cached image, do not boot")
    parser.add_argument("command", nargs="*", default=["stat", "-fc", "%T", "/sys/fs/cgroup"])
    options = parser.parse_args(args)
    machine = MACHINES[options.machine] if options.machine else choose_machine()
    try:
        if options.build_only:
            image = ensure_image(machine)
            print(f"{machine.name}: {image.package}: {image.kernel} {image.initrd} "
                  f"(built in {image.built_seconds:.1f} s)")
            return 0
        result = run(options.command, cwd=Path.cwd(), machine=machine, timeout=options.timeout,
                     memory_mb=options.memory_mb, cpus=options.cpus, live=True)
    except VmError as exc:
        print(f"cgroup2-vm: {exc}", file=sys.stderr)
        return 2
    print(f"cgroup2-vm: exit {result.returncode} in {result.seconds:.1f} s on {machine.name} "
          f"({result.image.package}, /sys/fs/cgroup {result.facts.get('cgroup_fs')}, "
          f"command started {result.facts.get('boot_seconds')} s after boot)", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
