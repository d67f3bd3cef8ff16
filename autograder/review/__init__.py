"""TA review: triage queries shared by the CLI (`grader show`, `grader status` filters) and `grader review`,
a local web page over the same queries. Reads the database and the run folders; writes only overrides
(through autograder.record) and regrades (through autograder.grade)."""
