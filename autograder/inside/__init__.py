"""Code that runs inside the sandbox, next to student code. It imports nothing from the rest of the grader."""
