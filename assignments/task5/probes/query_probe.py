"""Probe of task 5, part 2, run in the student's kernel after the notebook: the trained model answers queries.

The released notebook trains `modell = NewsgroupQA()`. This cell asks that object (or, if the name is missing,
the one object of the notebook that has an `answer` method) every query of /grader/probe-data/queries.json and
reports the answers in order; the labels are not here: the rubric judges the answers outside the sandbox. It
also reports the vocabularies of the fitted vectorizers the model holds (scikit-learn objects with
`vocabulary_`, or the model's own `vocab*`/`vokab*` dictionaries), so the rubric can tell whether they were
fitted on the test split. Standard library only; answering gets at most `answer_budget` (80 s) altogether,
which stays within the task's cell timeout.
"""


def _grader_query_probe(namespace):
    import json
    import time

    from autograder.inside.probe import probe_data, report

    answer_budget = 80.0
    max_terms, max_vocabularies = 60000, 6

    def find_model():
        model = namespace.get("modell")
        if model is not None and callable(getattr(model, "answer", None)):
            return "modell", model
        candidates = [
            (name, value) for name, value in list(namespace.items())
            if not name.startswith("_") and not isinstance(value, type)
            and callable(getattr(value, "answer", None)) and not callable(getattr(value, "__func__", None))
        ]
        return candidates[0] if len(candidates) == 1 else (None, None)

    def plain(value):
        if isinstance(value, str):
            return value[:200]
        return {"type": type(value).__name__, "repr": repr(value)[:100]}

    def vocabularies(model):
        found, seen = [], set()

        def terms(mapping):
            return [str(k)[:100] for k in list(mapping)[:max_terms]]

        def visit(obj, depth, name=""):
            if id(obj) in seen or depth > 4 or len(found) >= max_vocabularies:
                return
            seen.add(id(obj))
            if isinstance(obj, dict):
                if "vocab" in name.lower() or "vokab" in name.lower():
                    if len(obj) >= 20 and all(isinstance(k, str) for k in list(obj)[:100]):
                        found.append({"where": name, "terms": terms(obj), "n": len(obj)})
                        return
                for key, value in list(obj.items())[:50]:
                    visit(value, depth + 1, f"{name}[{str(key)[:30]!r}]")
                return
            if isinstance(obj, (list, tuple)):
                for index, value in enumerate(obj[:50]):
                    visit(value, depth + 1, f"{name}[{index}]")
                return
            if isinstance(obj, (str, bytes, int, float, complex, bool)) or obj is None:
                return
            vocabulary = getattr(obj, "__dict__", {}).get("vocabulary_") if hasattr(obj, "__dict__") else None
            if isinstance(vocabulary, dict) and vocabulary:
                found.append({"where": f"{name} ({type(obj).__name__})", "terms": terms(vocabulary),
                              "n": len(vocabulary)})
            attributes = getattr(obj, "__dict__", None)
            if isinstance(attributes, dict) and type(obj).__module__ not in ("builtins",):
                for key, value in list(attributes.items())[:100]:
                    if key != "vocabulary_":
                        visit(value, depth + 1, f"{name}.{key}")

        try:
            visit(model, 0, "modell")
        except Exception as exc:  # a strange object must not stop the report
            return {"error": f"{type(exc).__name__}: {exc}"[:300], "found": found}
        return {"found": found}

    name, model = find_model()
    if model is None:
        report("model", {"missing": True})
        return
    report("model", {"name": name, "type": type(model).__name__})
    queries = json.loads(probe_data("queries.json").read_text(encoding="utf-8"))
    answers, errors, started = [], [], time.monotonic()
    for query in queries:
        if time.monotonic() - started > answer_budget:
            report("answers_timeout", {"answered": len(answers), "budget": answer_budget})
            break
        try:
            answers.append(plain(model.answer(query)))
        except Exception as exc:
            answers.append(None)
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
    report("answers", answers)
    report("answer_errors", {"count": len(errors), "first": errors[:3]})
    report("vocabularies", vocabularies(model))


_grader_query_probe(globals())
del _grader_query_probe
