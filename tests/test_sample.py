"""The demo's sample: a representative pick of a task's solutions, built the way Moodle would hand them out."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from autograder.config import load_config
from autograder.sample import build_sample, representative, solutions

REPO = Path(__file__).resolve().parents[1]


def test_representative_keeps_the_reference_and_spreads_over_the_rest() -> None:
    folders = [Path(name) for name in ["reference", "alt_a", "alt_b", "wrong_a", "wrong_b", "wrong_c", "wrong_d"]]

    picked = [p.name for p in representative(folders, 4)]

    assert picked == ["reference", "alt_a", "wrong_a", "wrong_c"]
    assert representative(folders, None) == folders
    assert representative(folders, 20) == folders


def test_a_picked_sample_has_alternatives_and_mistakes_of_every_task(tmp_path: Path) -> None:
    config = load_config(REPO / "grader.toml")
    for task_id in ("task3", "task4", "task5"):
        task = config.task(task_id)
        archive, _ = build_sample(config, task, tmp_path / task_id, count=6)

        chosen = json.loads((tmp_path / task_id / "participants.json").read_text(encoding="utf-8"))
        names = [entry["solution"] for entry in chosen.values()]
        assert len(names) == 6 and names[0] == "reference"
        assert any(n.startswith("alt") or "_alt_" in n for n in names), names
        assert any("wrong" in n for n in names), names
        with zipfile.ZipFile(archive) as zf:
            folders = {name.split("/")[0] for name in zf.namelist()}
        assert len(folders) == 6
        assert len(solutions(config, task)) > 6  # the tests grade all of them; the demo a sample
