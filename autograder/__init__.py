"""notebook-grader: grade Jupyter notebook tasks from a Moodle export, safely, and hand the grades back.

The pipeline, one module per stage: ingest → execute → capture → check → record → export.
"""

import sys

__version__ = "0.1.0"

# jsonschema, under nbformat, imports rfc3987_syntax when it is installed (jupyter-events asks for it), and that
# builds a parser grammar at import: 0.8 s on an idle machine, 5 s on a busy one, paid by every CLI call and
# rubric process, for IRI formats no notebook schema uses. Without it jsonschema skips those formats.
sys.modules.setdefault("rfc3987_syntax", None)
