"""What a sandbox built from this machine's own system shows: shared by the bwrap and podman backends.

Both make a root that holds only the system folders (read-only), the grader's Python environment at its own
paths (a venv's interpreter and scripts point there), the scratch and the RunSpec's mounts.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path

from autograder.sandbox.base import Mount

# System folders the command may read. /var/lib/texmf holds TeX's generated formats (task 3 compiles LaTeX).
SYSTEM_DIRS = ("/usr", "/etc", "/var/lib/texmf")
# On merged-/usr systems these are symlinks into /usr; elsewhere they are folders to mount.
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Readable only by root anyway; masked so that not even their existence tells anything.
SECRET_ETC_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-")


def system_dirs() -> list[str]:
    return [d for d in SYSTEM_DIRS if Path(d).is_dir()]


def python_dirs() -> list[str]:
    """The interpreter and its environment, never the grader's package: the only grader code a sandbox sees
    is the runner the execution mounts itself (autograder.execute stages it)."""
    dirs = {str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())}
    if Path(sys.prefix) != Path(sys.prefix).resolve():
        dirs.add(str(Path(sys.prefix)))
    covered = [d for d in dirs if not any(d != o and d.startswith(o + "/") for o in dirs)]
    return sorted(d for d in covered if not d.startswith(("/usr/", "/etc/")) and d not in ("/usr", "/etc"))


def masked_python_files() -> list[str]:
    """Files of the environment to cover with an empty file inside the sandbox: `pip install -e .` leaves a
    .pth and a finder module in site-packages that point the import of `autograder` at the repository."""
    masked: set[str] = set()
    for folder in sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix}).values():
        for path in Path(folder).glob("__editable__*") if Path(folder).is_dir() else ():
            if path.is_file():
                masked.add(str(path))
    return sorted(masked)


def identity_files(folder: Path, uid: int) -> list[Mount]:
    """A passwd and group naming the sandbox user, so tools like git can look it up."""
    passwd = folder / "passwd"
    group = folder / "group"
    passwd.write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\nstudent:x:{uid}:{uid}:student:/tmp:/bin/sh\n")
    group.write_text(f"root:x:0:\nstudent:x:{uid}:\n")
    for path in (passwd, group):
        path.chmod(0o644)
    folder.chmod(0o755)
    return [Mount(passwd, "/etc/passwd"), Mount(group, "/etc/group")]


def environment_id() -> str:
    """Identify this Python environment by its installed distributions (name==version), like a lock file."""
    from importlib import metadata

    # Only the environment's own site-packages, not sys.path: imports add folders to it (importing setuptools
    # adds its vendored distributions), and the id must not depend on what this process imported so far (a
    # Dask worker must compute the grader's keys). A set: purelib and platlib are often the same folder.
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    names = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions(path=paths)})
    return "venv:" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def interpreter() -> str:
    return sys.executable


def path_variable() -> str:
    return f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin"
