"""Upload: what Moodle will receive, and the warnings a student should read before uploading (German)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.config import TaskConfig

# Moodle's assignment setting "Accepted file types" is not in grader.toml; these are what the course accepts:
# notebooks, and for a repository task the repository as ZIP or git bundle.
NOTEBOOK_TYPES = (".ipynb",)
REPOSITORY_TYPES = (".zip", ".bundle")


@dataclass
class UploadView:
    """The files as Moodle gets them (name, size in KB) and the warnings about them."""

    files: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def view_upload(task: TaskConfig, paths: list[Path], max_notebook_mb: int) -> UploadView:
    """What Moodle receives from these files, and every warning about names, types, size, outputs and .git."""
    view = UploadView(files=[(p.name, max(1, round(p.stat().st_size / 1024))) for p in paths])
    accepted = (*NOTEBOOK_TYPES, *(REPOSITORY_TYPES if task.repository else ()))
    expected = [nb.file for nb in task.notebooks]
    names = [p.name for p in paths]
    for path in paths:
        if path.suffix.lower() not in accepted:
            view.warnings.append(f"„{path.name}“: Moodle nimmt nur {', '.join(accepted)} an; diese Datei wird "
                                 "abgelehnt oder nicht bewertet.")
        if path.suffix.lower() == ".ipynb":
            view.warnings += _notebook_warnings(task, path, expected, max_notebook_mb)
        if path.suffix.lower() == ".zip" and task.repository and not _zip_has_git(path):
            view.warnings.append(f"„{path.name}“ enthält keinen Ordner .git: ohne ihn fehlt die Historie Ihres "
                                 "Repositorys. Packen Sie den ganzen Ordner mit dem versteckten .git (oder laden "
                                 "Sie ein git bundle hoch).")
    embedded = _repository_notebooks(paths) if task.repository else set()
    missing = [f for f in expected if embedded is not None and f not in names and f not in embedded]
    if missing:
        listed = ", ".join(f"„{f}“" for f in missing)
        view.warnings.append(f"Nicht dabei: {listed}. Laden Sie in Moodle alle Notebooks der Aufgabe hoch, jedes "
                             "unter seinem Namen.")
    if task.repository and not any(p.suffix.lower() in REPOSITORY_TYPES for p in paths):
        view.warnings.append("Das Repository fehlt: laden Sie es als ZIP mit dem Ordner .git (oder als git bundle) "
                             "hoch.")
    return view


def _notebook_warnings(task: TaskConfig, path: Path, expected: list[str], max_mb: int) -> list[str]:
    warnings = []
    if expected and path.name not in expected:
        wanted = " oder ".join(f"„{name}“" for name in expected)
        warnings.append(f"„{path.name}“ heißt nicht wie in der Aufgabe ({wanted}). Benennen Sie die Datei nicht "
                        "um: Moodle gibt sie unter diesem Namen weiter.")
    size_mb = path.stat().st_size / (1024 * 1024)
    if size_mb > max_mb:
        warnings.append(f"„{path.name}“ ist mit {size_mb:.0f} MB größer als die {max_mb} MB, die bewertet "
                        "werden. Entfernen Sie große Ausgaben oder eingebettete Daten.")
    elif task.require_outputs and not _has_outputs(path):
        warnings.append(f"„{path.name}“ hat keine Ausgaben. Führen Sie das Notebook vollständig aus und "
                        "speichern Sie es mit den Ausgaben („Notebook mit Ausgaben hochladen“).")
    return warnings


def _has_outputs(path: Path) -> bool:
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return False
    return any(c.get("outputs") or c.get("execution_count") for c in cells if c.get("cell_type") == "code")


def _zip_has_git(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(".git" in name.split("/")[:-1] for name in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _repository_notebooks(paths: list[Path]) -> set[str] | None:
    """Names of the notebooks inside uploaded ZIPs; None when a bundle is uploaded (only git can read it)."""
    found: set[str] = set()
    for path in paths:
        if path.suffix.lower() == ".bundle":
            return None
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    found |= {Path(name).name for name in zf.namelist() if name.endswith(".ipynb")}
            except (OSError, zipfile.BadZipFile):
                continue
    return found
