"""notebook-grader: grade Jupyter notebook tasks from a Moodle export, safely, and hand the grades back.

The pipeline, one module per stage: ingest → execute → capture → check → record → export.
"""

__version__ = "0.1.0"
