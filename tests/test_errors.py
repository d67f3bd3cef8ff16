"""The exception tree: every grader error derives from GraderError and says when it is raised."""

import inspect

from autograder import errors


def test_every_error_is_a_documented_grader_error():
    """All exception classes in errors.py subclass GraderError and have a 'Raised when' docstring."""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) >= 7
    for cls in classes:
        assert issubclass(cls, errors.GraderError), cls
        assert (cls.__doc__ or "").startswith("Raised when"), cls
