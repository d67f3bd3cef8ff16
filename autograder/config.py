"""grader.toml: the course, its tasks, where files live and how student code runs; validated once on load.

Every section is one pydantic model with a type, a default and a description per field. `load_config` is the
only reader of the file; the CLI loads it once and passes values down. Relative paths are resolved against the
folder that holds grader.toml, so the grader behaves the same from any working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autograder.errors import ConfigError

DEFAULT_CONFIG_NAME = "grader.toml"
CONFIG_ENV_VAR = "GRADER_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CourseConfig(_Section):
    name: str = Field(description="Full course title, shown in feedback pages.")
    short_name: str = Field(description="Moodle's course short name, used in generated file names.")
    term: str = Field(default="", description="Term, e.g. 'Wintersemester 2026/27'.")


class PathsConfig(_Section):
    assignments: Path = Field(default=Path("assignments"), description="Task sources, data, rubrics, solutions.")
    release: Path = Field(default=Path("release"), description="Where `grader release` writes student material.")
    submissions: Path = Field(default=Path("submissions"), description="Imported submissions, one folder per task.")
    runs: Path = Field(default=Path("runs"), description="Executed notebooks and captured figures per run.")
    database: str = Field(default="sqlite:///grader.db", description="SQLAlchemy URL of the grader's database.")
    nbgrader_course: Path = Field(default=Path("nbgrader"), description="nbgrader course directory (gradebook).")
    offline_data: Path = Field(
        default=Path(".offline-data"),
        description="Folder that `grader data` fills: 20 Newsgroups cache, NLTK data, model path.",
    )


class SandboxConfig(_Section):
    backend: str = Field(default="bwrap", description="Sandbox backend: bwrap, fork (bwrap's sandbox, forked from "
                         "an interpreter with the libraries loaded), podman or docker.")
    uid: int = Field(default=61000, ge=1000, description="First unprivileged uid; worker k runs as uid + k.")
    workers: Union[int, None] = Field(default=None, ge=1, le=64, description="Submissions graded at once; default: "
                                      "what this machine allows for the task, min(cores, available memory // the "
                                      "task's memory limit), at least 1.")
    pids: int = Field(default=256, ge=16, description="Most processes (and threads) one sandbox may hold.")
    file_size_mb: int = Field(default=512, ge=1, description="Largest file a notebook may write.")
    scratch_mb: int = Field(default=1024, ge=16, description="Size of the writable scratch (tmpfs) in MB.")
    output_mb: int = Field(default=64, ge=1, description="Most bytes a sandbox may send back (executed notebook).")
    grace_seconds: int = Field(default=20, ge=1, description="Extra wall time before a sandbox is killed hard.")
    max_notebook_mb: int = Field(default=20, ge=1, description="Largest uploaded notebook that is run at all.")
    max_images: int = Field(default=500, ge=1, description="Most images an executed notebook may show.")
    max_image_kb: int = Field(default=4096, ge=1, description="Largest single image an executed notebook may show.")
    cpus: Union[float, None] = Field(default=None, ge=0.1, description="CPU share of one sandbox in cores (cgroup "
                                     "quota, --cpus); default: this machine's cores divided by the workers "
                                     "(one core when workers is not set).")
    preload: Union[list[str], None] = Field(default=None, description="Modules the fork backend's server imports "
                                            "once for every notebook (default: the kernel, papermill, numpy, pandas, "
                                            "scikit-learn and matplotlib's core; autograder/sandbox/fork.py).")
    launcher: list[str] = Field(default_factory=list, description="Command that starts the privileged sandbox "
                                "launcher when the grader runs as an ordinary user, e.g. [\"sudo\", \"-n\", "
                                "\"/opt/grader/.venv/bin/grader-sandbox\", \"--config\", \"/srv/course/grader.toml\"] "
                                "(docs/sandbox.md); empty, or the grader running as root: the backend runs in-process.")

    def cpu_share(self) -> float:
        """The cores one sandbox may use: `cpus`, else an equal share of this machine for each of the `workers`."""
        if self.cpus is not None:
            return self.cpus
        if self.workers is None:  # workers chosen per run: one core each, the same every run (it is in cache keys)
            return 1.0
        return round((os.cpu_count() or 1) / self.workers, 2)

    def workers_for(self, task: "TaskConfig") -> int:
        """`workers` if set, else what this machine allows for the task (see `machine_workers`)."""
        return self.workers or machine_workers(task)


class ScaleConfig(_Section):
    passed: str = Field(default="erfolgreich bearbeitet", description="Moodle scale item for a pass.")
    failed: str = Field(default="nicht erfolgreich bearbeitet", description="Moodle scale item for a fail.")
    passed_points: Union[float, None] = Field(default=None, description="Points for a pass when the assignment is graded "
                                           "in points (default: the row's maximum grade).")
    failed_points: float = Field(default=0.0, ge=0, description="Points for a fail when graded in points.")


class MoodleConfig(_Section):
    identifier_header: str = Field(default="Identifier", description="Worksheet column of 'Participant N'.")
    fullname_header: str = Field(default="Full name", description="Worksheet column of the participant's name.")
    email_header: str = Field(default="Email address", description="Worksheet column of the e-mail address.")
    status_header: str = Field(default="Status", description="Worksheet column of the submission status.")
    grade_header: str = Field(default="Grade", description="Worksheet column Moodle reads the grade from.")
    modified_header: str = Field(default="Last modified (grade)", description="Worksheet grade date column.")
    feedback_header: str = Field(default="Feedback comments", description="Worksheet feedback column (HTML).")
    participant_prefix: str = Field(default="Participant ", description="Prefix of identifiers in the worksheet.")
    draft_status: str = Field(default="Draft (not submitted)", description="Status text of an unsubmitted draft.")
    group_header: str = Field(default="Group", description="Worksheet column of the team (team submissions).")
    default_group: str = Field(default="Default group", description="Group text of users in no group.")
    scale_header: str = Field(default="Scale", description="Worksheet column listing the scale items (scale grading).")
    maximum_header: str = Field(default="Maximum Grade", description="Worksheet column of the maximum (point grading).")
    decimal_separator: str = Field(default="", max_length=1, description="Decimal separator of the importing "
                                   "user's language ('.' English, ',' German); empty: taken from the worksheet.")


class RuntimeConfig(_Section):
    kind: Literal["cpu", "gpu"] = Field(default="cpu", description="Whether the runtime offers a GPU.")
    image: str = Field(default="", description="Container image, pinned by digest (container backends).")
    rootfs: Path | None = Field(default=None, description="Root filesystem for `podman --rootfs` (offline tests).")
    backend: str | None = Field(
        default=None, description="Backend that runs this runtime (podman/docker on a GPU host); default [sandbox].backend."
    )


class NotebookConfig(_Section):
    id: str = Field(description="Short id of the notebook within its task, e.g. 'clustering'.")
    file: str = Field(description="File name of the released notebook.")
    title: str = Field(default="", description="German title shown in feedback.")
    runtime: str | None = Field(default=None, description="Runtime override for this notebook.")
    parameters: dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="Extra papermill parameters."
    )
    fast_parameters: dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="Papermill parameters added in fast mode (CPU grading of GPU work)."
    )
    probe: str | None = Field(
        default=None, description="Probe script (in the task folder) run after the notebook inside the sandbox."
    )
    facts: str | None = Field(
        default=None,
        description="Grader-owned script (in the task folder) run after the notebook as `python -I` in a fresh "
        "sandbox over the upload and the `keep` folders, loading no student code; the JSON it prints is the "
        "rubric's facts.json. A task's [repository] sets it for the notebook with its id (TaskConfig.parts).",
    )
    keep: list[str] = Field(
        default_factory=list,
        description="Folders (relative to the notebook's folder) the notebook's run leaves behind that the facts "
        "command measures, e.g. a saved model: carried out of the notebook's sandbox as data, never loaded by "
        "the grader itself.",
    )
    keep_mb: int = Field(default=256, ge=1, description="Most MB the `keep` folders may hold together; larger "
                         "ones are not carried out (the facts command is told so).")
    cell_timeout: int | None = Field(default=None, ge=1, description="Per-cell timeout override (s).")
    notebook_timeout: int | None = Field(default=None, ge=1, description="Per-notebook timeout override (s).")
    memory_mb: int | None = Field(default=None, ge=64, description="Memory limit override (MB).")


Scalar = Union[str, int, float, bool]


class CriterionMarking(_Section):
    """Whether a criterion decides the verdict: `required` ones do, `advice` is shown but never decides."""

    marking: Literal["required", "advice"] = Field(description="required: decides the verdict; advice: only shown.")
    implements: Union[str, list[str]] = Field(
        default="",
        description="For a required criterion: the words (one phrase or several) of the task's released pass "
        "condition (\"Bearbeitet ist die Aufgabe, wenn …\") it implements; tests/test_pass_conditions.py checks "
        "them against the released text.",
    )

    @model_validator(mode="after")
    def _advice_claims_no_text(self) -> "CriterionMarking":
        if self.marking == "advice" and self.implements:
            raise ValueError("an advice criterion implements no part of the pass condition (drop `implements`)")
        return self

    @property
    def required(self) -> bool:
        return self.marking == "required"

    @property
    def phrases(self) -> list[str]:
        """The phrases of the pass condition this criterion implements (none for advice)."""
        return [self.implements] if isinstance(self.implements, str) and self.implements else list(self.implements or [])


class RepositoryConfig(_Section):
    """A task whose upload is a git repository (ZIP with .git, or a bundle), judged by the grader's facts command."""

    id: str = Field(default="repo", description="Id of the part the rubric checks (pytest.mark.notebook). A notebook "
                    "with this id belongs to the task and is graded with the repository; without one the repository "
                    "alone is the upload and no notebook criterion applies.")
    title: str = Field(default="Repository", description="German title shown in feedback.")
    facts: str = Field(description="Grader-owned script (in the task folder, standard library only) run as `python "
                       "-I` in a fresh sandbox over the uploaded repository, with or without a notebook, loading no "
                       "student code; the JSON it prints is the rubric's facts.json.")


class TaskConfig(_Section):
    id: str = Field(description="Task id, the key under [tasks].")
    title: str = Field(description="German title of the task.")
    runtime: str = Field(default="cpu", description="Runtime (see [runtimes]) the notebooks run in.")
    cell_timeout: int = Field(default=120, ge=1, description="Seconds one cell may run.")
    notebook_timeout: int = Field(default=600, ge=1, description="Seconds one notebook may run in all.")
    memory_mb: int = Field(default=3072, ge=64, description="Memory limit of one sandbox (MB).")
    pass_rule: Literal["all-required"] = Field(
        default="all-required", description="How criteria become a verdict: pass if every required one passes."
    )
    require_outputs: bool = Field(
        default=False, description="Course rule 'Notebook mit Ausgaben hochladen': uploads must carry outputs."
    )
    fast_mode: bool = Field(default=False, description="Run with FAST_MODE=True and the notebooks' fast parameters.")
    allow_fast_cpu: bool = Field(
        default=False,
        description="A gpu notebook with no GPU backend runs in fast mode on the CPU; its verdict is provisional.",
    )
    notebooks: list[NotebookConfig] = Field(default_factory=list, description="The notebooks a submission must "
                                            "contain (none: the task's [repository] is the whole upload).")
    repository: RepositoryConfig | None = Field(default=None, description="The upload is a git repository, "
                                                "measured by the grader's facts command (task 3).")
    rubric: dict[str, Scalar] = Field(
        default_factory=dict, description="Values for the settings the rubric declares in rubric/settings.toml."
    )
    rubric_timeout: int = Field(default=600, ge=1, description="Seconds the rubric may take for one submission.")
    criteria: dict[str, CriterionMarking] = Field(
        default_factory=dict,
        description="Marking per criterion id ('<notebook id>.<name>'): \"advice\", \"required\" or a table "
        "{ marking, implements }. It wins over the rubric's own marker; a criterion not named keeps that marker.",
    )

    @field_validator("criteria", mode="before")
    @classmethod
    def _short_markings(cls, criteria: object) -> object:
        # "advice" is short for { marking = "advice" }
        if isinstance(criteria, dict):
            return {cid: {"marking": m} if isinstance(m, str) else m for cid, m in criteria.items()}
        return criteria

    @model_validator(mode="after")
    def _marked_criteria_name_a_notebook(self) -> "TaskConfig":
        # Whether the criterion exists is known only when the rubric reports (check.judge); its notebook now.
        notebooks = {nb.id for nb in self.parts()}
        for criterion_id in self.criteria:
            notebook, _, name = criterion_id.partition(".")
            if notebook not in notebooks or not name:
                raise ValueError(f"criteria.{criterion_id}: not '<notebook id>.<criterion>' of a notebook of this "
                                 f"task (notebooks: {', '.join(sorted(notebooks))})")
        return self

    def marking(self, criterion_id: str) -> CriterionMarking | None:
        """How grader.toml marks this criterion, or None when it leaves the rubric's marker in force."""
        return self.criteria.get(criterion_id)

    @field_validator("notebooks")
    @classmethod
    def _unique_notebook_ids(cls, notebooks: list[NotebookConfig]) -> list[NotebookConfig]:
        ids = [nb.id for nb in notebooks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"notebook ids must be unique, got {ids}")
        return notebooks

    @model_validator(mode="after")
    def _something_to_grade(self) -> "TaskConfig":
        if not self.notebooks and self.repository is None:
            raise ValueError("notebooks: a task needs at least one notebook or a [repository]")
        if self.repository and any(nb.facts for nb in self.notebooks if nb.id == self.repository.id):
            raise ValueError(f"notebooks: {self.repository.id}: its `facts` is the task's [repository] facts")
        for nb in self.notebooks:
            if nb.keep and not nb.facts:
                raise ValueError(f"notebooks: {nb.id}: `keep` needs a `facts` command that measures it")
            for folder in nb.keep:
                if not folder or folder.startswith("/") or ".." in folder.split("/"):
                    raise ValueError(f"notebooks: {nb.id}: keep {folder!r} is not a folder inside the upload")
        return self

    def parts(self) -> list[NotebookConfig]:
        """What each submission is executed and judged as: every notebook (the one with the repository's id runs
        the facts command too) and, when no notebook has that id, the repository alone (file "")."""
        repository = self.repository
        if repository is None:
            return list(self.notebooks)
        found = [nb.model_copy(update={"facts": repository.facts}) if nb.id == repository.id else nb
                 for nb in self.notebooks]
        if all(nb.id != repository.id for nb in self.notebooks):
            found.append(NotebookConfig(id=repository.id, file="", title=repository.title, facts=repository.facts))
        return found

    def measures_repository(self, notebook: NotebookConfig) -> bool:
        """Whether this part runs the repository's facts command: the upload is then measured even without the
        notebook (a notebook's own facts measure what its run left behind, so they need the run)."""
        return self.repository is not None and notebook.id == self.repository.id

    def notebook(self, notebook_id: str) -> NotebookConfig:
        for nb in self.parts():
            if nb.id == notebook_id:
                return nb
        raise ConfigError(f"task {self.id} has no notebook {notebook_id!r}")


class Config(_Section):
    course: CourseConfig
    paths: PathsConfig = PathsConfig()
    sandbox: SandboxConfig = SandboxConfig()
    scale: ScaleConfig = ScaleConfig()
    moodle: MoodleConfig = MoodleConfig()
    runtimes: dict[str, RuntimeConfig] = Field(default_factory=lambda: {"cpu": RuntimeConfig()})
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    root: Path = Field(default=Path("."), description="Folder holding grader.toml (set by load_config).")
    source: Path = Field(default=Path(DEFAULT_CONFIG_NAME), description="The file this was loaded from.")

    @model_validator(mode="after")
    def _runtimes_exist(self) -> "Config":
        for task in self.tasks.values():
            for runtime in [task.runtime, *(nb.runtime for nb in task.notebooks if nb.runtime)]:
                if runtime not in self.runtimes:
                    raise ValueError(f"tasks.{task.id}: runtime {runtime!r} is not declared under [runtimes]")
        return self

    def task(self, task_id: str) -> TaskConfig:
        """The task with this id, or a ConfigError that lists the known ones."""
        try:
            return self.tasks[task_id]
        except KeyError:
            known = ", ".join(sorted(self.tasks))
            raise ConfigError(f"{self.source}: no task {task_id!r} (known: {known})") from None

    def path(self, relative: Path) -> Path:
        """A configured path made absolute against the folder of grader.toml."""
        return relative if relative.is_absolute() else (self.root / relative)

    def database_url(self) -> str:
        """The database URL, with a relative SQLite file resolved against the folder of grader.toml."""
        url = self.paths.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self.root / url[len(prefix):])
        return url

    def task_dir(self, task_id: str) -> Path:
        return self.path(self.paths.assignments) / task_id

    def rubric_settings(self, task: TaskConfig) -> dict[str, Scalar]:
        """The task's rubric settings: each declared one with its value from grader.toml or its default."""
        declared = read_rubric_settings(self.task_dir(task.id) / "rubric" / RUBRIC_SETTINGS_FILE)
        return resolve_rubric_settings(declared, task.rubric, f"tasks.{task.id}.rubric")

    def runtime_for(self, task: TaskConfig, notebook: NotebookConfig) -> tuple[str, RuntimeConfig]:
        name = notebook.runtime or task.runtime
        return name, self.runtimes[name]


def machine_workers(task: TaskConfig) -> int:
    """How many submissions of `task` this machine can grade at once: min(cores, available memory // the largest
    memory limit of its notebooks), at least 1."""
    memory_mb = max([nb.memory_mb or task.memory_mb for nb in task.parts()] or [task.memory_mb])
    return max(1, min(_cores(), available_memory_mb() // memory_mb))


def available_memory_mb() -> int:
    """MemAvailable of /proc/meminfo in MB (what can be used without swapping); the total where it is missing."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    except OSError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    kilobytes = fields.get("MemAvailable") or fields.get("MemTotal") or "0 kB"
    return int(kilobytes.split()[0]) // 1024


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def invoking_user() -> tuple[int, int] | None:
    """The (uid, gid) of the user who started this process through sudo (SUDO_UID, SUDO_GID), else None.

    Only the sandbox launcher asks: it opens what a run mounts as that user, never as root. sudo sets both
    variables itself, so a caller cannot choose them."""
    uid, gid = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    return (int(uid), int(gid)) if uid.isdigit() and gid.isdigit() else None


def find_config(explicit: Path | None = None) -> Path:
    """The config file to use: the explicit one, else $GRADER_CONFIG, else ./grader.toml."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV_VAR)
    return Path(from_env) if from_env else Path(DEFAULT_CONFIG_NAME)


def load_config(path: Path) -> Config:
    """Read and validate grader.toml; any problem becomes one ConfigError line naming the file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    for key in ("root", "source"):
        if key in raw:
            raise ConfigError(f"{path}: {key}: unknown key")
    tasks = raw.get("tasks")
    if isinstance(tasks, dict):
        raw["tasks"] = {tid: {"id": tid, **t} if isinstance(t, dict) else t for tid, t in tasks.items()}
    root = path.resolve().parent
    try:
        config = Config(**raw, root=root, source=path)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_problem(exc)}") from None
    for task in config.tasks.values():  # a mistyped threshold is one line now, not a wrong verdict later
        try:
            config.rubric_settings(task)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return config


# --- Rubric settings: declared by each rubric, given values in grader.toml ----------------------------------

RUBRIC_SETTINGS_FILE = "settings.toml"
_SETTING_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


class RubricSetting(_Section):
    """One setting a rubric reads, as declared in its rubric/settings.toml (one table per setting)."""

    type: Literal["float", "int", "bool", "str"] = Field(description="Type of the value.")
    default: Scalar | None = Field(default=None, description="Value when grader.toml gives none; none: required.")
    description: str = Field(description="What the setting means and how the default was chosen.")


def read_rubric_settings(path: Path) -> dict[str, RubricSetting]:
    """The settings a rubric declares (none when it has no settings.toml); ConfigError if malformed."""
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        declared = {name: RubricSetting(**entry) for name, entry in raw.items()}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read rubric settings ({exc})") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_problem(exc)}") from None
    for name, setting in declared.items():
        if setting.default is not None:
            _typed(setting, setting.default, f"{path}: {name}.default")
    return declared


def resolve_rubric_settings(declared: dict[str, RubricSetting], given: dict[str, Scalar],
                            where: str) -> dict[str, Scalar]:
    """Every declared setting with its value; an unknown, missing or mistyped one is a ConfigError."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise ConfigError(f"{where}.{unknown[0]}: unknown rubric setting (declared: {known})")
    values: dict[str, Scalar] = {}
    for name, setting in declared.items():
        if name in given:
            values[name] = _typed(setting, given[name], f"{where}.{name}")
        elif setting.default is not None:
            values[name] = setting.default
        else:
            raise ConfigError(f"{where}.{name}: missing (the rubric declares it without a default)")
    return values


def _typed(setting: RubricSetting, value: Scalar, where: str) -> Scalar:
    """The value as the declared type; an int is a fine float, anything else of another type is an error."""
    wanted = _SETTING_TYPES[setting.type]
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not wanted:
        raise ConfigError(f"{where}: expected {setting.type}, got {value!r}")
    return value


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    if error["type"] == "missing":
        return f"{location}: missing key"
    message = error["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def fingerprint(*parts: object) -> str:
    """A stable sha256 over JSON-able parts (config sections, hashes); used to key cached results."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
