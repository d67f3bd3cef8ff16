"""matplotlib's font list, built once: the sandbox's runner seeds each fresh MPLCONFIGDIR with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autograder.errors import GraderError


def write_font_cache(target: Path) -> str:
    """Let matplotlib scan the system fonts into `target` (same fonts as the sandbox: it mounts /usr)."""
    target.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "MPLCONFIGDIR": str(target)}
    done = subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=environment,
                          capture_output=True, text=True)
    built = sorted(p.name for p in target.glob("fontlist-*.json"))
    if done.returncode != 0 or not built:
        raise GraderError(f"matplotlib could not build its font list: {done.stderr.strip()[-300:]}")
    return ", ".join(built)
