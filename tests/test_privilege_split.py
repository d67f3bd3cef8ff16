"""The privilege split: an ordinary user grades, only the sandbox launcher (through sudo) runs as root.

The test makes an ordinary user and a sudoers rule that lets it start exactly the launcher's command line, then
runs `grader import`, `grader grade` and `grader status --json` as that user on a course folder it owns, and
compares with the same grading done as root. It also sends the launcher requests it must refuse.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, SANDBOXCHECK_CONFIG, TEST_ACCOUNT, TEST_ASSIGNMENTS, make_workspace, moodle_zip, notebook

pytestmark = pytest.mark.sandbox  # root, bwrap, sudo

USER = TEST_ACCOUNT
SUDOERS = Path("/etc/sudoers.d/grader-test-launcher")
GRADER = Path(sys.executable).parent / "grader"
SUBMISSIONS = {
    "1000001": {"check.ipynb": notebook("print('fertig')")},
    "1000002": {"check.ipynb": notebook("print('noch nicht')")},
}


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    """An ordinary account without a home or a login shell (made once, kept: accounts are cheap to keep)."""
    if os.geteuid() != 0 or shutil.which("sudo") is None:
        pytest.skip("needs root and sudo (apt-get install sudo)")
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        return pwd.getpwnam(USER)


@pytest.fixture(scope="module")
def course(user: pwd.struct_passwd):
    """A course folder owned by the user, whose grader.toml names the launcher, and the sudo rule that lets the
    user start exactly that command as root; both removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="grader-privsplit-"))
    root = folder / "course"
    launcher = [sys.executable, "-I", "-m", "autograder.sandbox_service", "--config", str(root / "grader.toml")]
    setting = f"launcher = {json.dumps(['sudo', '-n', *launcher])}"
    config = SANDBOXCHECK_CONFIG.replace("[sandbox]\n", f"[sandbox]\n{setting}\n")
    workspace = make_workspace(root, config, TEST_ASSIGNMENTS)
    moodle_zip(root / "m.zip", SUBMISSIONS)
    shutil.chown(folder, user.pw_uid, user.pw_gid)
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    rule = f"{USER} ALL=(root) NOPASSWD: {' '.join(launcher)}\n"
    SUDOERS.write_text(rule)
    SUDOERS.chmod(0o440)
    subprocess.run(["visudo", "-cqf", str(SUDOERS)], check=True)
    try:
        yield workspace
    finally:
        SUDOERS.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def as_user(user: pwd.struct_passwd, *argv: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """Run argv as the ordinary user, with a clean environment and no capabilities."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--", *argv]
    return subprocess.run([*_interpreter_view(cwd.parent), *command], cwd=cwd, env=env, input=stdin,
                          capture_output=True, timeout=300)


def _interpreter_view(spare: Path) -> list[str]:
    """A prefix that lets the ordinary user start this Python. Where it lives below a folder only root may
    enter (pyenv under /root on the development machines; a real host installs Python in /usr), a private
    mount namespace covers that folder with an empty one that holds just the interpreter's tree."""
    real = Path(sys.executable).resolve()
    closed = [p for p in real.parents if p != Path("/") and not p.stat().st_mode & 0o001]
    if not closed:
        return []
    if len(closed) > 1:
        pytest.skip(f"this Python ({real}) lies below several folders an ordinary user cannot enter")
    top = closed[0]
    inner = top / real.relative_to(top).parts[0]
    hold = spare / "interpreter"
    hold.mkdir(exist_ok=True)
    script = (f"mount --bind {inner} {hold} && mount -t tmpfs -o mode=0755,size=1m tmpfs {top} && "
              f"mkdir {inner} && mount --move {hold} {inner} && exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


@pytest.mark.slow(cost=75)  # four sandbox runs and two gradebooks, as the user and as root
def test_an_ordinary_user_grades_through_the_launcher(user, course, sandboxcheck, tmp_path):
    """Import, grade and status as the user give the verdicts root gets; the user owns the database and the
    run files; the notebooks ran under the sandbox uid with the cgroup limits in force."""
    config = ["-c", str(course.config_path)]
    steps = [["import", "sandboxcheck", str(course.root / "m.zip")], ["grade", "sandboxcheck"],
             ["status", "sandboxcheck", "--json"]]
    with ThreadPoolExecutor(max_workers=1) as pool:  # the user's grader in its processes, root's here meanwhile
        user_steps = pool.submit(lambda: [as_user(user, str(GRADER), *config, *step, cwd=course.root) for step in steps])
        assert sandboxcheck.cli("import", "sandboxcheck", moodle_zip(tmp_path / "m.zip", SUBMISSIONS)).exit_code == 0
        assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
        as_root = {participant: row["verdict"] for participant, row in sandboxcheck.status("sandboxcheck").items()}
        results = user_steps.result()
    for step, result in zip(steps, results):
        assert result.returncode == 0, f"{step}: {result.stderr.decode()[-2000:]}"
    as_ordinary_user = {row["participant"]: row["verdict"] for row in json.loads(results[-1].stdout)}
    assert as_ordinary_user == as_root == {"1000001": "pass", "1000002": "fail"}

    files = [course.root / "grader.db", *(course.root / "runs").rglob("*")]
    assert (course.root / "grader.db").is_file()
    assert {path.stat().st_uid for path in files} == {user.pw_uid}
    records = [json.loads(p.read_text()) for p in (course.root / "runs").rglob("execution.json")]
    assert len(records) == 2
    for record in records:
        held = record["sandbox"]
        assert held["uid"] in ("61000", "61001")
        assert held["limits"] in ("cgroup1", "cgroup2")
        assert (held["memory_mb"], held["pids"]) == (768, 256)


def test_the_launcher_refuses_what_the_grader_never_asks(user, course):
    """A mount from outside the course, an unknown target, a writable mount, a PATH of the caller's choosing
    and a command of its own: each one line on stderr and exit 2, nothing run."""
    launcher = course.config().sandbox.launcher
    job = course.root / "runs" / "job.json"
    job.parent.mkdir(exist_ok=True)
    job.write_text("{}")
    for path in (job.parent, job):
        os.chown(path, user.pw_uid, user.pw_gid)
    ready = {"argv": ["python", "-I", "-c", "print('ok')"], "environment": {}, "mounts": [],
             "limits": {"wall_seconds": 60}}
    refused = {
        "outside the course": {**ready, "mounts": [{"source": "/etc", "target": "/data", "writable": False}]},
        "is not one of": {**ready, "mounts": [{"source": str(job), "target": "/etc/passwd", "writable": False}]},
        "read-only": {**ready, "mounts": [{"source": str(job), "target": "/grader/job.json", "writable": True}]},
        "environment differs": {**ready, "environment": {"PATH": "/input"}},
        "is not one the grader runs": {**ready, "argv": ["python", "-c", "import os"]},
    }
    for expected, spec in refused.items():
        request = json.dumps({"protocol": 1, "spec": spec}).encode()
        result = as_user(user, *launcher, cwd=course.root, stdin=request)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (expected, result.stderr)
        assert lines[0].startswith("grader-sandbox: refused: ") and expected in lines[0]
        assert result.stdout == b""
    # the same request with an allowed mount runs, as the sandbox uid
    allowed = {**ready, "argv": ["python", "-I", "-c", "print('ok')"],
               "mounts": [{"source": str(job), "target": "/grader/job.json", "writable": False}]}
    result = as_user(user, *launcher, cwd=course.root, stdin=json.dumps({"protocol": 1, "spec": allowed}).encode())
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["reason"] == "ok" and answer["details"]["uid"] == "61000"


def test_doctor_as_the_user_names_what_runs_as_root(user, course):
    """`grader doctor` of an ordinary user's course asks the launcher, and says that only it runs as root."""
    result = as_user(user, str(GRADER), "-c", str(course.root / "grader.toml"), "doctor", cwd=course.root)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "as root only the launcher" in output and f"as {USER}" in output, output
    assert "Ready to grade." in output


def test_the_launchers_repository_is_root_owned():
    """sudo runs the launcher from this checkout: a file the user could change would be root's code."""
    for path in [REPO / "autograder" / "sandbox_service.py", Path(sys.executable).resolve()]:
        assert path.stat().st_uid == 0 and not path.stat().st_mode & 0o022
