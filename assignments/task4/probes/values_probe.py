"""Probe of task 4, run in the student's kernel after the notebook: report the named results as plain JSON.

The released notebook names every result it asks for. This cell converts each one to JSON (pandas and numpy
objects to lists, missing values to null) and reports it under its own name; a name that is not defined is
reported as {"missing": true}, one that cannot be converted as {"error": "..."}. It holds no expected value:
the rubric compares outside the sandbox. Standard library only, plus pandas if the notebook imported it.
"""


def _grader_task4_probe(namespace):
    import math
    import sys

    from autograder.inside.probe import report

    max_rows, max_items = 5000, 20000
    pandas = sys.modules.get("pandas")

    def scalar(value):
        if value is None or isinstance(value, (bool, str)):
            return value[:200] if isinstance(value, str) else value
        if type(value).__name__ in ("bool_", "bool"):
            return bool(value)
        if pandas is not None:
            try:
                if pandas.isna(value) is True:
                    return None
            except (TypeError, ValueError):
                pass
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return str(value)[:200]
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and "int" in type(value).__name__ else number

    def key(value):
        return str(value)[:200]

    def kind(value):
        return type(value).__name__

    def is_frame(value):
        return pandas is not None and isinstance(value, pandas.DataFrame)

    def is_series(value):
        return pandas is not None and isinstance(value, pandas.Series)

    def frame(value):
        rows = [[scalar(v) for v in row] for row in value.head(max_rows).itertuples(index=False, name=None)]
        return {
            "type": "DataFrame",
            "columns": [key(c) for c in value.columns],
            "index": [key(i) for i in value.index[:max_rows]],
            "rows": rows,
            "n_rows": int(value.shape[0]),
            "n_columns": int(value.shape[1]),
        }

    def table(value):
        """A Series, dict or DataFrame of results: items (key, value), or the DataFrame as a whole."""
        if is_frame(value):
            return frame(value)
        if is_series(value):
            return {"type": "Series", "items": [[key(k), scalar(v)] for k, v in list(value.items())[:max_items]]}
        if isinstance(value, dict):
            return {"type": kind(value), "items": [[key(k), scalar(v)] for k, v in list(value.items())[:max_items]]}
        return {"type": kind(value)}

    def pairs(value):
        """top_words: (word, count) pairs from a list, a dict/Counter/FreqDist, a Series or a two-column frame."""
        if is_frame(value):
            if value.shape[1] == 2:
                items = [[key(a), scalar(b)] for a, b in value.head(max_items).itertuples(index=False, name=None)]
            elif value.shape[1] == 1:
                items = [[key(k), scalar(v)] for k, v in value.iloc[:max_items, 0].items()]
            else:
                return {"type": "DataFrame", "columns": [key(c) for c in value.columns]}
            return {"type": "DataFrame", "items": items, "n": int(value.shape[0])}
        if is_series(value) or isinstance(value, dict):
            items = list(value.items())
            return {"type": kind(value), "items": [[key(k), scalar(v)] for k, v in items[:max_items]],
                    "n": len(items)}
        if isinstance(value, (list, tuple)):
            items = []
            for entry in list(value)[:max_items]:
                if isinstance(entry, (list, tuple)) and len(entry) == 2:
                    items.append([key(entry[0]), scalar(entry[1])])
                else:
                    items.append([key(entry), None])
            return {"type": kind(value), "items": items, "n": len(value)}
        return {"type": kind(value)}

    def strings(value):
        """stems: a list (or tuple, Series, array) of strings, in order."""
        if isinstance(value, (str, dict)) or is_frame(value):
            return {"type": kind(value)}
        try:
            items = list(value)
        except TypeError:
            return {"type": kind(value)}
        return {"type": kind(value), "items": [key(v) for v in items[:max_items]], "n": len(items)}

    def whole_frame(value):
        return frame(value) if is_frame(value) else {"type": kind(value)}

    def shape(value):
        if is_frame(value):
            return {"type": "DataFrame", "n_rows": int(value.shape[0]), "columns": [key(c) for c in value.columns]}
        return {"type": kind(value)}

    wanted = {
        "penguins": shape,
        "missing_per_column": table,
        "penguins_clean": whole_frame,
        "median_mass": table,
        "mean_flipper": table,
        "island_counts": table,
        "stems": strings,
        "top_words": pairs,
    }
    for name, convert in wanted.items():
        try:
            value = {"missing": True} if name not in namespace else convert(namespace[name])
        except Exception as exc:  # a strange object must not stop the other reports
            value = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        try:
            report(name, value)
        except Exception as exc:
            report(name, {"error": f"not reportable: {type(exc).__name__}"})


_grader_task4_probe(globals())
del _grader_task4_probe
