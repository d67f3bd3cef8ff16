"""Expected values of task 4 and the probe's reports read back (helpers for test_analysis.py).

The data expectations are computed here from the public data/penguins.csv with pandas, exactly as the task text
prescribes (drop every row with a missing value, group by species or island). The text expectations come from
hidden/expected.json (tools/make_expected.py computed them with the sandbox's NLTK data). The probe reports
each named result of the notebook as JSON (see probes/values_probe.py); the readers below turn a report back
into plain Python values, or None with the reason in German.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

KEY_COLUMNS = ["species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex",
               "year"]
# name -> (group column, value column, aggregate); island_counts counts rows.
AGGREGATES = {
    "median_mass": ("species", "body_mass_g", "median"),
    "mean_flipper": ("species", "flipper_length_mm", "mean"),
    "island_counts": ("island", None, "size"),
}


class Unreadable(Exception):
    """A probe report that does not hold what the task asks for; the message is German, for the student."""


def aggregate(frame: pd.DataFrame, name: str, how: str | None = None) -> dict[str, float]:
    """One of the task's aggregates (or the same grouping with another statistic) of a frame."""
    group, column, default = AGGREGATES[name]
    how = how or default
    grouped = frame.groupby(group, observed=True)
    series = grouped.size() if how == "size" else getattr(grouped[column], how)()
    return {str(k): float(v) for k, v in series.items()}


@dataclass
class PenguinExpectations:
    raw: pd.DataFrame
    clean: pd.DataFrame

    @classmethod
    def load(cls, data_dir: Path) -> "PenguinExpectations":
        raw = pd.read_csv(data_dir / "penguins.csv")
        return cls(raw=raw, clean=raw.dropna())

    @property
    def missing(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.raw.isna().sum().items()}


def load_words(hidden_dir: Path) -> dict[str, Any]:
    return json.loads((hidden_dir / "expected.json").read_text(encoding="utf-8"))


# --- reading the probe's reports ----------------------------------------------------------------------------


def report_of(probe: dict[str, Any], name: str) -> dict[str, Any]:
    """The probe's report for one name; Unreadable if the name was not defined or could not be read."""
    value = probe.get(name)
    if not isinstance(value, dict):
        raise Unreadable(f"Die Ergebnisse Ihres Notebooks konnten nicht ausgelesen werden (`{name}` fehlt).")
    if value.get("missing"):
        raise Unreadable(f"Die Variable `{name}` gibt es nach dem Ausführen Ihres Notebooks nicht. Speichern Sie "
                         f"das Ergebnis unter genau diesem Namen.")
    if "error" in value:
        raise Unreadable(f"`{name}` konnte nicht ausgelesen werden ({value['error'][:120]}).")
    return value


def frame_of(probe: dict[str, Any], name: str) -> pd.DataFrame:
    """A DataFrame the probe reported whole (columns and rows)."""
    value = report_of(probe, name)
    if value.get("type") != "DataFrame" or "rows" not in value:
        raise Unreadable(f"`{name}` ist kein pandas-DataFrame (sondern {value.get('type', 'unbekannt')}).")
    return pd.DataFrame(value["rows"], columns=value["columns"])


def mapping_of(probe: dict[str, Any], name: str, column: str | None = None) -> dict[str, float | None]:
    """A Series/dict of results as {key: number}; a DataFrame counts if it has one column (or `column`)."""
    value = report_of(probe, name)
    if "items" in value:
        items = value["items"]
    elif value.get("type") == "DataFrame" and "rows" in value:
        columns = value["columns"]
        if len(columns) == 1:
            position = 0
        elif column in columns:
            position = columns.index(column)
        else:
            raise Unreadable(f"`{name}` ist ein DataFrame mit mehreren Spalten ({', '.join(columns[:5])}); "
                             f"erwartet wird eine Series mit einem Wert je Gruppe.")
        items = [[index, row[position]] for index, row in zip(value["index"], value["rows"])]
    else:
        raise Unreadable(f"`{name}` ist keine pandas-Series (sondern {value.get('type', 'unbekannt')}).")
    return {str(k): _number(v) for k, v in items}


def strings_of(probe: dict[str, Any], name: str) -> list[str]:
    value = report_of(probe, name)
    if "items" not in value:
        raise Unreadable(f"`{name}` ist keine Liste von Wörtern (sondern {value.get('type', 'unbekannt')}).")
    return [str(v) for v in value["items"]]


def pairs_of(probe: dict[str, Any], name: str) -> list[tuple[str, float | None]]:
    value = report_of(probe, name)
    if "items" not in value:
        raise Unreadable(f"`{name}` ist keine Liste von Paaren (wortstamm, anzahl) (sondern "
                         f"{value.get('type', 'unbekannt')}).")
    return [(str(k), _number(v)) for k, v in value["items"]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


# --- comparing -----------------------------------------------------------------------------------------------


def close(a: float | None, b: float | None, rel_tol: float) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def same_mapping(got: dict[str, float | None], want: dict[str, float], rel_tol: float) -> bool:
    return set(got) == set(want) and all(close(got[k], want[k], rel_tol) for k in want)


def same_values(got: list[float], want: list[float], rel_tol: float) -> bool:
    """Two lists hold the same numbers in any order (each within the tolerance)."""
    return len(got) == len(want) and all(close(a, b, rel_tol) for a, b in zip(sorted(got), sorted(want)))


def rows(frame: pd.DataFrame, columns: list[str]) -> Counter:
    """The rows of a frame over `columns` as a multiset, with numbers normalised (index and dtypes ignored)."""
    def cell(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return round(float(value), 6)
        return str(value)

    return Counter(tuple(cell(v) for v in row) for row in frame[columns].astype(object).itertuples(index=False))


def top_ten_problem(pairs: list[tuple[str, float | None]], counts: Counter, top: int = 10) -> str | None:
    """None if `pairs` are `top` most frequent stems of `counts` with their counts (any order among ties)."""
    if len(pairs) != top:
        return f"`top_words` enthält {len(pairs)} Einträge statt {top}."
    words = [w for w, _ in pairs]
    if any(c is None for _, c in pairs):
        return "`top_words` soll Paare (wortstamm, anzahl) enthalten, z. B. das Ergebnis von most_common(10)."
    if len(set(words)) != top:
        return "In `top_words` kommen Wortstämme mehrfach vor."
    wrong = [w for w, c in pairs if counts.get(w, 0) != c]
    if wrong:
        return (f"Die Anzahl in `top_words` stimmt für „{wrong[0]}“ nicht mit der Häufigkeit in `stems` überein. "
                "Zählen Sie die Wortstämme aus `stems` mit FreqDist oder Counter.")
    lowest = min(c for _, c in pairs)
    higher = [w for w, c in counts.items() if w not in set(words) and c > lowest]
    if higher:
        return ("`top_words` enthält nicht die 10 häufigsten Wortstämme: es gibt häufigere, die fehlen. Nehmen Sie "
                "die 10 Einträge mit der größten Anzahl, z. B. mit most_common(10).")
    return None
