"""The in-sandbox half of execution: run one notebook with papermill and report back on a private channel.

Started by autograder.execute inside the sandbox, from the only grader code mounted there (this package,
staged as `autograder.inside`). It copies the submission into the scratch folder, strips every tag and
metadata key that papermill, nbclient or the grader give meaning to, tags the parameters cell the grader
chose (never one the student chose), appends the task's probe (if any), and executes every cell with the
grader's kernel (which loads the figure capture), continuing past failing cells. Each cell has a timeout; a
watchdog enforces the notebook's deadline by killing the kernel (and anything the notebook started). The
report says which cells papermill and the runner inserted, by index: no tag in the result decides anything.

The executed notebook never touches a file: papermill runs it with an engine that keeps it in this
process's memory, so a process the notebook left behind cannot rewrite what is reported. Only this process
may write the report: it keeps the original stdout on a private descriptor, points fd 1 at stderr before the
kernel starts (the kernel inherits fds 0-2, never the private one), and makes itself non-dumpable so the
student's processes (same uid) cannot open /proc/<pid>/fd of it. Nothing it reports is trusted by the host.
After the report's one line, the folders the job names under `keep` (a saved model) follow as a tar of plain
files (keep_folders): data for the grader's facts command, which reads it in a sandbox of its own.
Standard library, papermill and nbformat only; it must not import the rest of the grader.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

# Keeps jsonschema (under nbformat) from building rfc3987_syntax's grammar at import, seconds of every run for
# formats no notebook uses (the grader's own processes do the same in autograder/__init__.py).
sys.modules.setdefault("rfc3987_syntax", None)

KERNEL_NAME = "grader-python3"
CELL_TIMEOUT_ENAME = "CellTimeoutError"
PARAMETERS_TAG = "parameters"  # papermill injects its parameters cell after the first cell tagged so
# Tags that change what papermill or nbclient do with a cell (papermill: parameters, injected-parameters,
# papermill-error-cell-tag; nbclient: raises-exception, skip-execution) or that the grader once gave meaning to
# (grader-probe). An upload's cells lose them before anything runs.
RESERVED_TAGS = frozenset({
    "parameters", "injected-parameters", "papermill-error-cell-tag", "grader-probe", "raises-exception",
    "skip-execution",
})
# papermill's own bookkeeping, on the notebook and on each cell (it reads the cells' status back).
RESERVED_METADATA = ("papermill",)
ENGINE_NAME = "grader-in-memory"


def main(job_path: str) -> int:
    channel = _private_stdout()
    _make_undumpable()
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    started = time.monotonic()
    try:
        report = run_job(job)
    except Exception as exc:  # the runner's own failure: still report, the host decides what it means
        report = {"status": "runner-error", "message": f"{type(exc).__name__}: {exc}"[:2000]}
    report["duration"] = round(time.monotonic() - started, 3)
    channel.write(json.dumps(report).encode("utf-8"))  # one line: json.dumps escapes every newline
    if job.get("keep") and report["status"] != "runner-error":
        channel.write(b"\n" + keep_folders(job["keep"], int(job["keep_bytes"])))
    channel.flush()
    return 0


def run_job(job: dict) -> dict:
    """Prepare the scratch folder and kernel, run the notebook, and describe the outcome."""
    workdir = Path.cwd()
    _copy_tree(Path(job["input_dir"]), workdir)
    _install_kernel(Path(job["kernel_dir"]), job.get("kernel_env", {}))
    _seed_matplotlib_cache(job.get("matplotlib_cache"))

    source = workdir / job["notebook"]
    os.chdir(source.parent)  # the notebook runs in its own folder (e.g. the root of an uploaded repository)
    _clone_bundle(source.parent)
    if job.get("data_dir") and not Path("data").exists():
        Path("data").symlink_to(job["data_dir"])
    kernel = _Kernel()
    try:
        return _run_notebook(job, source, kernel)
    finally:
        kernel.stop()


def _run_notebook(job: dict, source: Path, kernel: "_Kernel") -> dict:
    """Read the upload as the grader wants it run (reserved tags stripped, parameters cell chosen, probe
    appended) and run it on `kernel`."""
    import nbformat

    try:
        nb = nbformat.read(str(source), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        return {"status": "invalid-notebook", "message": f"{type(exc).__name__}: {exc}"[:2000]}
    _strip_reserved(nb)
    chosen = _parameters_cell_index(nb, job.get("parameters_cell") or {})
    if chosen is not None:
        nb.cells[chosen].metadata["tags"] = [*nb.cells[chosen].metadata.get("tags", []), PARAMETERS_TAG]
    if job.get("probe"):
        nb.cells.append(nbformat.v4.new_code_cell(Path(job["probe"]).read_text(encoding="utf-8")))
    inserted = _inserted_cells(len(nb.cells), chosen, bool(job.get("parameters")), bool(job.get("probe")))
    return _execute(nb, job, inserted, kernel)


KEEP_MANIFEST = "keep.json"
KEEP_MAX_FILES = 2000


def keep_folders(folders: list[str], limit: int) -> bytes:
    """The folders the notebook left behind (relative to its folder) as an uncompressed tar, for the facts command.

    Only directories and regular files, never a symlink (listed as skipped); nothing of a folder whose files
    exceed `limit` bytes (all folders together) or KEEP_MAX_FILES. The manifest `keep.json` at the tar's root
    says what became of each folder: kept, missing, not-a-folder or too-large. The host never opens this tar;
    the facts command reads it in a sandbox of its own.
    """
    import io
    import tarfile

    manifest: dict = {"folders": {}, "bytes": 0, "limit_bytes": limit, "skipped": []}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in folders:
            entries = _folder_entries(Path(folder), manifest["skipped"])
            if entries is None:
                manifest["folders"][folder] = "not-a-folder" if os.path.lexists(folder) else "missing"
                continue
            size = sum(e[2] for e in entries)
            if manifest["bytes"] + size > limit or len(entries) > KEEP_MAX_FILES:
                manifest["folders"][folder] = "too-large"
                manifest.setdefault("found_bytes", {})[folder] = size
                continue
            for path, is_dir, counted in entries:
                manifest["bytes"] += _add_entry(tar, path, is_dir, counted)
            manifest["folders"][folder] = "kept"
        data = json.dumps(manifest).encode("utf-8")
        info = tarfile.TarInfo(KEEP_MANIFEST)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _folder_entries(folder: Path, skipped: list[str]) -> list[tuple[str, bool, int]] | None:
    """(path, is a directory, size) of a folder and everything in it, without following links; None: no folder."""
    import stat

    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
    except OSError:
        return None
    entries: list[tuple[str, bool, int]] = [(folder.as_posix(), True, 0)]
    for root, dirs, files in os.walk(folder, followlinks=False):
        walked = []
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(root, name)
            try:
                found = os.lstat(path)
            except OSError:  # removed meanwhile (a process the notebook left behind)
                continue
            if stat.S_ISDIR(found.st_mode):
                entries.append((path, True, 0))
                walked.append(name)
            elif stat.S_ISREG(found.st_mode):
                entries.append((path, False, found.st_size))
            elif len(skipped) < 50:
                skipped.append(path)
        dirs[:] = walked  # os.walk does not descend into links to folders (followlinks=False) nor these
    return entries


def _add_entry(tar, path: str, is_dir: bool, counted: int) -> int:
    """Add one directory or regular file (opened without following a link swapped in since, cut at the size it
    had when counted); the bytes added."""
    import io
    import tarfile

    info = tarfile.TarInfo(path)
    if is_dir:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(counted)
    except OSError:
        return 0
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
    return len(data)


def _strip_reserved(nb) -> None:
    """Remove every tag and metadata key an upload could use to steer papermill, nbclient or the grader."""
    for key in RESERVED_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in RESERVED_METADATA:
            cell.metadata.pop(key, None)
        if "tags" in cell.metadata:
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t not in RESERVED_TAGS]


def _parameters_cell_index(nb, wanted: dict) -> int | None:
    """The code cell that is the released notebook's parameters cell: by nbgrader grade_id, else by cell id,
    else by its unchanged source (an upload whose cell ids were regenerated). None: papermill injects first."""
    def grade_id(cell) -> object:
        nbgrader = cell.metadata.get("nbgrader")
        return nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None

    matchers = [
        lambda cell: bool(wanted.get("grade_id")) and grade_id(cell) == wanted["grade_id"],
        lambda cell: bool(wanted.get("id")) and cell.get("id") == wanted["id"],
        lambda cell: bool(wanted.get("source")) and cell.source.strip() == wanted["source"].strip(),
    ]
    for matches in matchers:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and matches(cell):
                return index
    return None


def _inserted_cells(count: int, chosen: int | None, parameters: bool, probe: bool) -> dict[str, int | None]:
    """Where the grader's cells will be in the executed notebook of `count` prepared cells: papermill puts its
    parameters cell right after the tagged cell (first, if none is tagged); the probe is the last cell."""
    injected = (0 if chosen is None else chosen + 1) if parameters else None
    total = count + (1 if parameters else 0)
    return {"parameters": injected, "probe": total - 1 if probe else None}


def _seed_matplotlib_cache(cache: str | None) -> None:
    """Start from a prebuilt font list: building it costs every fresh sandbox about 1.5 s of CPU."""
    target = os.environ.get("MPLCONFIGDIR")
    if not cache or not target or not Path(cache).is_dir():
        return
    Path(target).mkdir(parents=True, exist_ok=True)
    for font_list in Path(cache).glob("fontlist-*.json"):
        shutil.copyfile(font_list, Path(target) / font_list.name)


def _clone_bundle(folder: Path) -> None:
    """A repository uploaded as a git bundle (task 3) becomes a working copy here, inside the sandbox only.

    Only when the notebook's folder holds exactly one `*.bundle` and no `.git`: the bundle is cloned to /tmp
    and its files fill the folder, the uploaded ones (the notebook) kept. git runs with hooks and fsmonitor
    off and no system or global config. Where the folder is the scratch root (root's), it is marked safe for
    git in $HOME/.gitconfig, so the notebook's own `!git log` works. A bundle that does not clone leaves the
    folder as it was: the task's probe then finds no repository and the rubric says so.
    """
    import subprocess

    bundles = sorted(p for p in folder.glob("*.bundle") if p.is_file() and not p.is_symlink())
    if len(bundles) != 1 or (folder / ".git").exists():
        return
    clone = Path("/tmp/grader-bundle")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LC_ALL": "C.UTF-8",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
    try:
        subprocess.run(["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null", "clone", "-q",
                        str(bundles[0]), str(clone)], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return
    for entry in clone.iterdir():
        if not os.path.lexists(folder / entry.name):
            shutil.move(str(entry), str(folder / entry.name))
    if folder.stat().st_uid != os.getuid():  # the scratch root belongs to root: git would call it dubious
        with (Path(os.environ.get("HOME", "/tmp")) / ".gitconfig").open("a", encoding="utf-8") as config:
            config.write(f"[safe]\n\tdirectory = {folder}\n")


class _Kernel:
    """The notebook's kernel, started before this process imports papermill and reads the notebook, so that both
    start side by side (0.2 s of every run); papermill runs the notebook on it and this process ends it.

    In a warm interpreter (the fork backend's: ipykernel and the course's libraries are loaded already) the
    kernel is forked from this process instead of started as a new one, and finds those libraries loaded."""

    def __init__(self) -> None:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self._sync = run_sync  # papermill's nbclient runs on the same event loop (one per thread)
        self.manager = AsyncKernelManager(kernel_name=KERNEL_NAME)
        if _can_fork_kernel():
            import uuid

            self.manager.kernel_id = str(uuid.uuid4())
            self.manager.provisioner = _forking_provisioner(self.manager)
        run_sync(self.manager.start_kernel)(cwd=os.getcwd())

    def stop(self) -> None:
        """Kill it: nothing of the kernel's exit work is read, and the sandbox ends with this process."""
        try:
            self._sync(self.manager.shutdown_kernel)(now=True)
        except Exception:  # dead already: killed at the deadline, by the memory limit, or by itself
            pass


def _can_fork_kernel() -> bool:
    """ipykernel is loaded (a warm interpreter) and this process has one thread (fork copies only the caller)."""
    return "ipykernel.kernelapp" in sys.modules and len(os.listdir("/proc/self/task")) == 1


def _forking_provisioner(manager):
    """jupyter_client's local provisioner, with the kernel forked from this process instead of started anew.

    The child is forked here, before jupyter_client's event loop runs (a child of a running loop inherits it,
    and ipykernel cannot start its own), and waits for the kernelspec's command on a pipe."""
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    pid, pipe = _fork_waiting_kernel()

    class ForkingProvisioner(LocalProvisioner):
        async def launch_kernel(self, cmd: list[str], **kwargs) -> dict:
            env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}  # as jupyter_client's
            launch = {"cmd": cmd, "env": env, "cwd": str(kwargs.get("cwd") or ".")}
            with os.fdopen(pipe, "w") as writer:
                writer.write(json.dumps(launch))
            self.process, self.pid, self.pgid = _ForkedProcess(pid), pid, pid
            self.cwd = kwargs.get("cwd", os.getcwd())
            return self.connection_info

    return ForkingProvisioner(kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec, parent=manager)


def _fork_waiting_kernel() -> tuple[int, int]:
    """Fork a child that reads {cmd, env, cwd} from a pipe and runs `python -m ipykernel_launcher ARGS` (cmd) as
    that command would: its own session, its folder first on sys.path, then PYTHONPATH, the kernelspec's
    environment; not this runner's report channel, nor its undumpable state, nor numpy's random state of the
    fork server. Returns the child's pid and the pipe's writing end."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid != 0:
        os.close(reader)
        return pid, writer
    code = 1
    try:
        os.close(writer)
        for fd in _PRIVATE_FDS:
            os.close(fd)
        with os.fdopen(reader) as pipe:
            launch = json.loads(pipe.read() or "null")
        if launch is None:  # the runner ended before it started the kernel
            os._exit(0)
        cmd, env, cwd = launch["cmd"], launch["env"], launch["cwd"]
        os.setsid()
        _set_dumpable(True)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
        extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
        sys.path[:0] = [cwd, *extra]
        if sys.modules.get("rfc3987_syntax", False) is None:
            del sys.modules["rfc3987_syntax"]  # kept out of the runner only, not out of the notebook
        if "numpy.random" in sys.modules:
            sys.modules["numpy.random"].seed()  # fresh entropy, as a new process would have
        _thread_pools(env)
        from ipykernel.kernelapp import IPKernelApp

        sys.argv = [sys.modules["ipykernel.kernelapp"].__file__, *cmd[3:]]
        IPKernelApp.launch_instance(argv=cmd[3:])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc(file=sys.__stderr__)
    finally:
        os._exit(code)


def _thread_pools(env: dict[str, str]) -> None:
    """The BLAS and OpenMP threads the environment asks for, in a process whose libraries were loaded with one
    thread each (a fork server's: a process with threads cannot fork safely)."""
    variables = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    wanted = max(int(env.get(name) or 1) for name in variables)
    if wanted > 1 and "threadpoolctl" in sys.modules:
        sys.modules["threadpoolctl"].threadpool_limits(limits=wanted)


class _ForkedProcess:
    """What jupyter_client's local provisioner uses of a Popen, for a forked child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int | None:
        return self._reap(0)

    def _reap(self, options: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, options)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _execute(nb, job: dict, inserted: dict[str, int | None], kernel: _Kernel) -> dict:
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    engine = _in_memory_engine()
    deadline = _Deadline(job["notebook_timeout"])
    timed_out_cells: list[int] = []
    started: dict[int, float] = {}

    def on_cell_start(cell, cell_index):
        started[cell_index] = time.monotonic()

    def on_cell_executed(cell, cell_index, execute_reply):
        # A cell is timed out when nbclient gave up on it (its reply is ours) or when the interrupt nbclient
        # sent at the timeout ended it (the reply is the kernel's KeyboardInterrupt): tell it by the clock.
        content = execute_reply.get("content", {})
        elapsed = time.monotonic() - started.get(cell_index, time.monotonic())
        if content.get("ename") == CELL_TIMEOUT_ENAME or elapsed >= job["cell_timeout"]:
            timed_out_cells.append(cell_index)
            cell.outputs.append(
                nbformat.v4.new_output(
                    "error", ename=CELL_TIMEOUT_ENAME, evalue=f"cell exceeded {job['cell_timeout']} s", traceback=[]
                )
            )

    status, message = "completed", ""
    deadline.start()
    try:
        papermill.execute_notebook(
            nbformat.from_dict(nb),  # a v4 node throughout (an upgraded nbformat 3 upload is made of v3 nodes)
            None,
            engine_name=ENGINE_NAME,
            request_save_on_cell_execute=False,
            parameters=job.get("parameters") or None,
            kernel_name=KERNEL_NAME,
            language="python",
            progress_bar=False,
            cwd=str(Path.cwd()),
            execution_timeout=job["cell_timeout"],
            start_timeout=120,
            km=kernel.manager,  # started already; papermill's client neither starts nor ends it
            allow_errors=True,
            interrupt_on_timeout=True,
            # After a timed-out cell the kernel may still be busy; waiting for its output must not abort.
            raise_on_iopub_timeout=False,
            error_on_timeout={
                "ename": CELL_TIMEOUT_ENAME,
                "evalue": f"cell exceeded {job['cell_timeout']} s",
                "traceback": [],
            },
            on_cell_start=on_cell_start,
            on_cell_executed=on_cell_executed,
        )
    except PapermillExecutionError:
        pass  # some cell raised; each error is in the notebook, which is what we report
    except Exception as exc:
        # The kernel died (killed at the deadline, by the memory limit, or by itself) or would not start.
        if deadline.expired:
            status = "timeout"
        elif isinstance(exc, DeadKernelError):
            status = "kernel-died"
        else:
            status = "runner-error"
        message = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        deadline.cancel()
    expected = len(nb.cells) + (1 if inserted["parameters"] is not None else 0)
    executed = engine.executed()
    if executed is None or len(executed.cells) != expected:
        return {"status": status if status != "completed" else "runner-error", "message": message or "no output"}
    injected = inserted["parameters"]
    if injected is not None and "injected-parameters" not in executed.cells[injected].metadata.get("tags", []):
        return {"status": "runner-error", "message": f"papermill's parameters cell is not at index {injected}"}
    return {
        "status": status,
        "message": message,
        "running_cell": _running_cell(executed) if status != "completed" else None,
        "timed_out_cells": timed_out_cells,
        "grader_cells": inserted,
        "notebook": executed,
    }


def _in_memory_engine():
    """papermill's nbclient engine, registered as ENGINE_NAME, that keeps the notebook it runs in this process.

    Nothing is written or read back: no file the notebook's processes (same uid, same /tmp) could rewrite, and
    no serialisation after every cell (papermill's saves, 12 ms each for a notebook with four figures). The
    cells are taken as the engine leaves them, also when the kernel died, and before papermill inserts its
    two error-marker cells into the same notebook.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    class InMemoryEngine(NBClientEngine):
        notebook = None
        cells: list | None = None

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            cls.notebook = nb_man.nb
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            finally:
                cls.cells = list(nb_man.nb.cells)

        @classmethod
        def executed(cls):
            if cls.notebook is not None and cls.cells is not None:
                cls.notebook.cells = cls.cells
            return cls.notebook

    papermill_engines.register(ENGINE_NAME, InMemoryEngine)
    return InMemoryEngine


class _Deadline:
    """Kill the kernel and every other process of this sandbox when the notebook's time is up."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        mine = {os.getpid(), 1}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in mine:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _running_cell(nb) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            return index
    return None


def _install_kernel(kernel_dir: Path, env: dict) -> None:
    """A kernelspec for this interpreter that loads the figure capture extension on start.

    The kernel finds `autograder.inside` where this runner was loaded from (the staged folder the host
    mounts; the Python environment holds no grader code), through PYTHONPATH: the kernel is no `-I` process.
    """
    spec_dir = kernel_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--ext=autograder.inside.figures",
                 # History in memory, nothing written (`enabled=False` instead stalled the kernel's exit by
                 # 2.3 s in one run of three).
                 "--HistoryManager.hist_file=:memory:"],
        "display_name": "Python 3 (grader)",
        "language": "python",
        "env": env,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


def _copy_tree(source: Path, target: Path) -> None:
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, destination, symlinks=True)
        elif entry.is_file() and not entry.is_symlink():
            shutil.copy2(entry, destination)


_PRIVATE_FDS: list[int] = []  # closed in a forked kernel


def _private_stdout():
    """Keep the real stdout for the report and give everything else (the kernel included) stderr as fd 1."""
    sys.stdout.flush()
    private = os.dup(1)  # non-inheritable by default: a kernel started anew does not get it, a forked one closes it
    _PRIVATE_FDS.append(private)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private, "wb")


def _make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: processes of the same uid can no longer open /proc/<this pid>/fd/*."""
    _set_dumpable(False)


def _set_dumpable(dumpable: bool) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, int(dumpable), 0, 0, 0)
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
