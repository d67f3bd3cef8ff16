"""Rubric for task 4: load, clean and aggregate the penguins with pandas, plot them, and count a text's stems.

Values are read by the probe (probes/values_probe.py) under the names the task text gives and compared here,
outside the sandbox, with values computed from the public data (and, for the text, hidden/expected.json).
Plots are judged by what they show (analysis_plots). Each step is judged on its own: an aggregate is right if
it is right for the cleaned data, or for the student's own `penguins_clean` (whose mistake is then reported
once, under cleaning); likewise the top 10 against the student's own `stems` and the plots against the
student's own results. So one mistake costs one criterion. Thresholds come from grader.toml.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from analysis_plots import bar_charts, labels_name, line_charts, match_scatter, scatter_plots
from analysis_values import (AGGREGATES, KEY_COLUMNS, PenguinExpectations, Unreadable, aggregate, frame_of,
                             load_words, mapping_of, pairs_of, report_of, rows, same_mapping, same_values,
                             strings_of, top_ten_problem)
from autograder.release import TEXT_STUB

pytestmark = pytest.mark.notebook("analysis")

AGGREGATE_NAMES = {
    "median_mass": "den Median der Körpermasse je Art",
    "mean_flipper": "den Mittelwert der Flossenlänge je Art",
    "island_counts": "die Anzahl der Pinguine je Insel",
}
SPECIES_WORDS = re.compile(r"gentoo|adelie|chinstrap|esels|zügel|adélie", re.I)


@pytest.fixture(scope="module")
def penguins(data_dir):
    return PenguinExpectations.load(data_dir)


@pytest.fixture(scope="module")
def words(hidden_dir):
    return load_words(hidden_dir)


@pytest.fixture(scope="module")
def probe(notebooks):
    return notebooks["analysis"].probe


@pytest.fixture(scope="module")
def tolerance(settings):
    return float(settings["value_rel_tolerance"])


@pytest.fixture(scope="module")
def own_clean(probe):
    """The student's `penguins_clean`, if it is a frame with the data's columns (else None)."""
    try:
        frame = frame_of(probe, "penguins_clean")
    except Unreadable:
        return None
    return frame if {"species", "island", "body_mass_g", "flipper_length_mm"} <= set(frame.columns) else None


@pytest.fixture(scope="module")
def own_stems(probe):
    try:
        return strings_of(probe, "stems")
    except Unreadable:
        return None


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


def _check(read):
    """Run a probe reader; an Unreadable report fails the criterion with its German message."""
    try:
        return read()
    except Unreadable as exc:
        _fail(str(exc))


# --- a) to c): the data -------------------------------------------------------------------------------------


@pytest.mark.criterion("loaded")
def test_loaded(probe, penguins):
    """a) Der Datensatz ist vollständig als DataFrame `penguins` geladen"""
    value = _check(lambda: report_of(probe, "penguins"))
    assert value.get("type") == "DataFrame", (
        f"`penguins` ist kein pandas-DataFrame (sondern {value.get('type')}). Lesen Sie die Datei mit "
        "pd.read_csv ein."
    )
    missing = [c for c in penguins.raw.columns if c not in value.get("columns", [])]
    assert value.get("n_rows") == len(penguins.raw) and not missing, (
        f"`penguins` hat {value.get('n_rows')} Zeilen"
        + (f" und es fehlen die Spalten {', '.join(missing)}" if missing else "")
        + f"; erwartet werden alle {len(penguins.raw)} Pinguine mit allen Spalten der Datei. Lesen Sie sie ohne "
        "weitere Optionen mit pd.read_csv(f\"{DATA_DIR}/penguins.csv\") ein."
    )


@pytest.mark.criterion("cleaning")
def test_cleaning(probe, penguins, own_clean):
    """b) Fehlende Werte gezählt und unvollständige Zeilen entfernt (`missing_per_column`, `penguins_clean`)"""
    missing = _check(lambda: mapping_of(probe, "missing_per_column"))
    wrong = [c for c, n in penguins.missing.items() if missing.get(c, 0.0) != n]
    assert not wrong and set(missing) <= set(penguins.missing), (
        "`missing_per_column` gibt nicht für jede Spalte die Anzahl fehlender Werte in `penguins` an"
        + (f" (z. B. stimmt der Wert für „{wrong[0]}“ nicht)" if wrong else "")
        + ". Zählen Sie sie z. B. mit penguins.isna().sum()."
    )
    clean = _check(lambda: frame_of(probe, "penguins_clean"))
    absent = [c for c in KEY_COLUMNS if c not in clean.columns]
    assert not absent, (
        f"In `penguins_clean` fehlen die Spalten {', '.join(absent)}. Entfernen Sie nur Zeilen, keine Spalten."
    )
    left = int(clean[KEY_COLUMNS].isna().sum().sum())
    assert left == 0, (
        f"`penguins_clean` enthält noch {left} fehlende Werte. Entfernen Sie jede Zeile, in der mindestens ein "
        "Wert fehlt (z. B. mit dropna()); sonst beruhen Ihre Kennzahlen je nach Spalte auf unterschiedlich vielen "
        "Pinguinen."
    )
    if len(clean) == len(penguins.raw):
        _fail("`penguins_clean` hat noch alle Zeilen, aber keine fehlenden Werte mehr: Sie haben die Lücken "
              "offenbar aufgefüllt (z. B. mit fillna). Verlangt ist, die unvollständigen Zeilen zu entfernen; "
              "aufgefüllte Werte wie 0 verfälschen Mittelwerte und Mediane.")
    if len(clean) != len(penguins.clean):
        _fail(f"Sie haben {len(penguins.raw) - len(clean)} Zeilen entfernt. Entfernt werden sollen genau die "
              "Zeilen, in denen mindestens ein Wert fehlt – auch die, in denen nur das Geschlecht (`sex`) fehlt.")
    assert rows(clean, KEY_COLUMNS) == rows(penguins.clean, KEY_COLUMNS), (
        "`penguins_clean` hat die richtige Zahl von Zeilen, aber nicht dieselben Zeilen wie `penguins` ohne die "
        "unvollständigen Zeilen. Verändern Sie beim Bereinigen keine Werte."
    )


@pytest.mark.criterion("aggregates")
def test_aggregates(probe, penguins, own_clean, tolerance):
    """c) Median der Körpermasse und mittlere Flossenlänge je Art, Anzahl je Insel"""
    problems = []
    sources = [penguins.clean] + ([own_clean] if own_clean is not None else [])
    for name, (group, column, how) in AGGREGATES.items():
        try:
            got = mapping_of(probe, name, column)
        except Unreadable as exc:
            problems.append(str(exc))
            continue
        if any(same_mapping(got, aggregate(frame, name), tolerance) for frame in sources):
            continue
        want = aggregate(penguins.clean, name)
        if set(got) != set(want):
            problems.append(f"`{name}` soll {AGGREGATE_NAMES[name]} enthalten, mit einem Wert je "
                            f"{'Art' if group == 'species' else 'Insel'} ({', '.join(sorted(want))}); Ihre Series "
                            f"hat die Einträge {', '.join(sorted(got)[:6]) or 'keine'}.")
            continue
        other = {"median": "mean", "mean": "median"}.get(how)
        if other and any(same_mapping(got, aggregate(f, name, other), tolerance) for f in sources):
            named = {"median": "den Median (.median())", "mean": "den Mittelwert (.mean())"}
            problems.append(f"`{name}` enthält offenbar {named[other].split(' (')[0]} statt {named[how]}.")
            continue
        if same_mapping(got, aggregate(penguins.raw, name), tolerance):
            problems.append(f"`{name}` ist offenbar aus `penguins` statt aus dem bereinigten `penguins_clean` "
                            "berechnet.")
            continue
        off = next(k for k in sorted(want) if not (got.get(k) is not None
                                                   and abs(got[k] - want[k]) <= tolerance * abs(want[k])))
        problems.append(f"In `{name}` weicht der Wert für {off} ab. Berechnen Sie {AGGREGATE_NAMES[name]} aus "
                        "`penguins_clean` mit groupby (ohne zu runden).")
    assert not problems, " ".join(problems)


# --- d) the plots of the data -------------------------------------------------------------------------------


def _median_values(probe, penguins) -> list[list[float]]:
    """The medians the bar chart may show: the right ones, and the student's own `median_mass`."""
    candidates = [list(aggregate(penguins.clean, "median_mass").values())]
    try:
        own = mapping_of(probe, "median_mass", "body_mass_g")
        if own and all(v is not None for v in own.values()):
            candidates.append(list(own.values()))
    except Unreadable:
        pass
    return candidates


def _median_bar_chart(nb, probe, penguins, tolerance):
    for chart in bar_charts(nb.figures):
        for values in _median_values(probe, penguins):
            if any(same_values(reading, values, tolerance) for reading in chart.values):
                return chart
    return None


def _scatter(nb, penguins, settings):
    """The best scatter plot of flipper length against body mass, if one shows enough of the penguins."""
    data = penguins.raw.dropna(subset=["flipper_length_mm", "body_mass_g"])
    matches = [
        match_scatter(plot, data["flipper_length_mm"].to_numpy(), data["body_mass_g"].to_numpy(),
                      data["species"].astype(str).tolist(), len(penguins.clean))
        for plot in scatter_plots(nb.figures)
    ]
    good = [m for m in matches if m.matched_share >= 0.95 and m.coverage >= float(settings["scatter_min_coverage"])]
    return max(good, key=lambda m: (m.species_agreement, m.coverage)) if good else None


@pytest.mark.criterion("bar_plot")
def test_bar_plot(nb, probe, penguins, tolerance):
    """d) Balkendiagramm des Medians der Körpermasse je Art"""
    if _median_bar_chart(nb, probe, penguins, tolerance) is not None:
        return
    for line in line_charts(nb.figures):
        if any(same_values(line.values, values, tolerance) for values in _median_values(probe, penguins)):
            _fail("Sie haben die Mediane je Art als Liniendiagramm gezeichnet. Eine Linie verbindet Werte, als ob "
                  "es zwischen den Arten einen Verlauf gäbe; für Kategorien ist ein Balkendiagramm richtig, z. B. "
                  "median_mass.plot(kind=\"bar\") oder plt.bar(median_mass.index, median_mass.values).")
    three = [c for c in bar_charts(nb.figures) if any(len(r) == 3 for r in c.values)]
    assert not three, (
        "Ihr Balkendiagramm mit drei Balken zeigt nicht die Mediane der Körpermasse je Art aus `median_mass`. "
        "Die Höhe jedes Balkens soll der Median einer Art sein."
    )
    _fail("Es wurde kein Balkendiagramm des Medians der Körpermasse je Art gefunden (ein Balken je Art, Höhe = "
          "Median aus `median_mass`).")


@pytest.mark.criterion("scatter_plot")
def test_scatter_plot(nb, penguins, settings):
    """d) Streudiagramm Flossenlänge gegen Körpermasse, nach Art eingefärbt"""
    match = _scatter(nb, penguins, settings)
    if match is None:
        _fail("Es wurde kein Streudiagramm gefunden, das für die Pinguine aus `penguins_clean` die Flossenlänge "
              "(x-Achse) gegen die Körpermasse (y-Achse) zeigt, z. B. mit plt.scatter.")
    minimum = float(settings["scatter_species_min_ari"])
    assert match.colour_count > 1, (
        "Ihr Streudiagramm zeigt alle Pinguine in derselben Farbe. Färben Sie die Punkte nach Art ein (eine Farbe "
        "je Art), z. B. mit einem scatter-Aufruf je Art und label=…, oder mit seaborn und hue=\"species\"."
    )
    assert match.species_agreement >= minimum, (
        "Die Farben in Ihrem Streudiagramm entsprechen nicht den Arten: Jede Art soll genau eine eigene Farbe "
        f"haben (Übereinstimmung {match.species_agreement:.2f}, nötig sind {minimum:.2f})."
    )


@pytest.mark.criterion("axis_labels")
def test_axis_labels(nb, probe, penguins, words, tolerance, settings):
    """Alle verlangten Plots haben einen Titel und beschriftete Achsen"""
    plots = {}
    chart = _median_bar_chart(nb, probe, penguins, tolerance)
    if chart is not None:
        plots["Balkendiagramm der Mediane"] = chart
    match = _scatter(nb, penguins, settings)
    if match is not None:
        plots["Streudiagramm"] = match.plot
    frequency = _frequency_bar_chart(nb, probe, words, tolerance, require_labels=False)
    if frequency is not None:
        plots["Balkendiagramm der Wortstämme"] = frequency
    assert plots, "Es wurden keine der verlangten Plots gefunden, deren Beschriftung geprüft werden könnte."
    lacking = [f"{name} (es fehlt: {', '.join(plot.missing_labels())})"
               for name, plot in plots.items() if plot.missing_labels()]
    assert not lacking, (
        "Diese Plots sind nicht vollständig beschriftet: " + "; ".join(lacking) + ". Geben Sie jedem Plot einen "
        "Titel (plt.title bzw. ax.set_title) und beschriften Sie beide Achsen mit Größe und Einheit "
        "(plt.xlabel/plt.ylabel bzw. ax.set_xlabel/ax.set_ylabel)."
    )


# --- e) the text ---------------------------------------------------------------------------------------------


@pytest.mark.criterion("text_preprocessing")
def test_text_preprocessing(probe, words):
    """e) Text tokenisiert, kleingeschrieben, Stoppwörter entfernt und gestemmt (`stems`)"""
    stems = _check(lambda: strings_of(probe, "stems"))
    got, want = Counter(stems), Counter(words["stems"])
    if got == want:
        return
    variants = {name: Counter(counts) for name, counts in words["variants"].items()}
    explanations = {
        "no_stemming": "`stems` enthält die Wörter unverändert: Reduzieren Sie jedes Wort mit "
                       "PorterStemmer().stem(...) auf seinen Wortstamm.",
        "stopwords_kept": "`stems` enthält noch die Stoppwörter (z. B. „the“, „and“): Entfernen Sie vor dem "
                          "Stemmen alle Wörter, die in stopwords.words(\"english\") stehen.",
        "stemmed_before_stopwords": "Sie haben offenbar erst gestemmt und dann die Stoppwörter entfernt; dabei "
                                    "bleiben gestemmte Stoppwörter wie „wa“ (von „was“) übrig. Entfernen Sie die "
                                    "Stoppwörter vor dem Stemmen.",
        "not_lowercased": "Die Wörter wurden vor dem Entfernen der Stoppwörter nicht kleingeschrieben, so bleiben "
                          "z. B. „The“ am Satzanfang stehen. Schreiben Sie jedes Token mit .lower() klein.",
        "punctuation_kept": "`stems` enthält noch Satzzeichen: Behalten Sie nur Tokens, für die .isalpha() wahr ist.",
    }
    for name, counts in variants.items():
        if got == counts:
            _fail(explanations[name])
    leftovers = sorted(set(stems) & set(words["stopwords_in_text"]))
    hints = []
    if leftovers:
        hints.append("es sind noch Stoppwörter enthalten (z. B. „" + "“, „".join(leftovers[:3]) + "“)")
    if any(not s.isalpha() for s in stems):
        hints.append("es sind noch Tokens enthalten, die nicht nur aus Buchstaben bestehen")
    if any(s != s.lower() for s in stems):
        hints.append("es sind noch Großbuchstaben enthalten")
    if set(stems) & set(variants["no_stemming"]) - set(want):
        hints.append("einige Wörter sind nicht gestemmt")
    _fail(f"`stems` stimmt nicht mit dem erwarteten Ergebnis der Schritte 1–5 überein ({len(stems)} Einträge)"
          + (": " + "; ".join(hints) if hints else "") + ". Folgen Sie den Schritten genau: word_tokenize, nur "
          "alphabetische Tokens, kleinschreiben, Stoppwörter entfernen, mit PorterStemmer stemmen.")


@pytest.mark.criterion("word_frequencies")
def test_word_frequencies(probe, words, own_stems):
    """e) Die 10 häufigsten Wortstämme mit ihrer Anzahl (`top_words`)"""
    pairs = _check(lambda: pairs_of(probe, "top_words"))
    references = [Counter(words["stems"])] + ([Counter(own_stems)] if own_stems is not None else [])
    problems = [top_ten_problem(pairs, counts) for counts in references]
    assert None in problems, problems[-1]


def _frequency_values(probe, words) -> list[list[tuple[str, float]]]:
    """The (stem, count) pairs the frequency plot may show: the right ones, and the student's own top_words."""
    candidates = [[(w, float(c)) for w, c in words["top_words"]]]
    try:
        own = pairs_of(probe, "top_words")
        if own and all(c is not None for _, c in own):
            candidates.append(own)
    except Unreadable:
        pass
    return candidates


def _frequency_bar_chart(nb, probe, words, tolerance, require_labels=True):
    for chart in bar_charts(nb.figures):
        for pairs in _frequency_values(probe, words):
            counts = [c for _, c in pairs]
            if any(same_values(reading, counts, tolerance) for reading in chart.values):
                if not require_labels or labels_name(chart.labels, [w for w, _ in pairs]):
                    return chart
    return None


@pytest.mark.criterion("frequency_plot")
def test_frequency_plot(nb, probe, words, tolerance):
    """e) Balkendiagramm der 10 häufigsten Wortstämme"""
    if _frequency_bar_chart(nb, probe, words, tolerance) is not None:
        return
    if _frequency_bar_chart(nb, probe, words, tolerance, require_labels=False) is not None:
        _fail("Ihr Balkendiagramm zeigt die Anzahlen der 10 häufigsten Wortstämme, aber die Balken sind nicht mit "
              "den Wortstämmen beschriftet. Übergeben Sie die Wortstämme als x-Werte, z. B. plt.bar(stämme, "
              "anzahlen).")
    for line in line_charts(nb.figures):
        if any(np.allclose(sorted(line.values), sorted(c for _, c in pairs)) for pairs in
               _frequency_values(probe, words) if len(line.values) == len(pairs)):
            _fail("Sie haben die Häufigkeiten als Liniendiagramm gezeichnet (z. B. mit FreqDist.plot). Die "
                  "Wortstämme sind Kategorien ohne Reihenfolge: Zeichnen Sie ein Balkendiagramm, z. B. mit "
                  "plt.bar.")
    _fail("Es wurde kein Balkendiagramm der 10 häufigsten Wortstämme aus `top_words` gefunden (ein Balken je "
          "Wortstamm, Höhe = Anzahl).")


# --- f) and the whole notebook -------------------------------------------------------------------------------


@pytest.mark.criterion("interpretation")
def test_interpretation(nb, settings):
    """f) Interpretation der Ergebnisse in Markdown"""
    texts = " ".join(text for _, text in nb.markdown_cells())
    minimum = int(settings["interpretation_min_words"])
    count = len(re.findall(r"\w+", texts))
    assert count >= minimum and TEXT_STUB not in texts and "YOUR ANSWER HERE" not in texts, (
        f"Die Interpretation in Markdown fehlt oder ist zu kurz (gefunden: {count} Wörter, erwartet mindestens "
        f"{minimum}). Beantworten Sie die Fragen aus f) in der Markdown-Zelle darunter."
    )
    assert SPECIES_WORDS.search(texts), (
        "Ihre Interpretation nennt keine der drei Arten. Beantworten Sie auch die Frage, welche Art am "
        "schwersten ist."
    )


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    assert not nb.errors(), nb.errors_message()
