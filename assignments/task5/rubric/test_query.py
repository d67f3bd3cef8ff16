"""Rubric for task 5, part 2: a trained NewsgroupQA model answers queries with a 20 Newsgroups category.

The probe (probes/query_probe.py) asks the student's model `modell` the queries of probe-data/query/ inside the
sandbox; their labels and sets (hidden/query_labels.json, see tools/make_query_probes.py) are read only here.
Accuracy alone does not show the required preprocessing, so it is also judged by behaviour: a query whose
keywords are put in the plural ("inflected") and one with function words added ("stopwords") must get the same
answer as the plain form ("base"). Thresholds come from grader.toml.
"""

from __future__ import annotations

import json

import pytest


pytestmark = pytest.mark.notebook("query")


@pytest.fixture(scope="module")
def labels(hidden_dir):
    return json.loads((hidden_dir / "query_labels.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def categories(labels):
    return sorted({entry["group"] for entry in labels})


@pytest.fixture
def answers(nb, labels):
    """The model's answers, one per query (None where it raised or ran out of time); fails if there is no model."""
    model = nb.probe.get("model")
    if not model or model.get("missing"):
        pytest.fail(
            "Nach dem Ausführen des Notebooks gibt es kein trainiertes Modell `modell` (ein Objekt der Klasse "
            "`NewsgroupQA` mit der Methode `answer`), das die Prüffragen beantworten könnte. Lassen Sie die "
            "gegebene Zelle `modell = NewsgroupQA()` / `modell.train(...)` unverändert und sorgen Sie dafür, "
            "dass sie ohne Fehler durchläuft.", pytrace=False,
        )
    got = list(nb.probe.get("answers") or [])
    if not got:
        errors = nb.probe.get("answer_errors") or {}
        first = "; ".join(errors.get("first", [])[:1])
        pytest.fail("Ihr Modell hat keine der Prüffragen beantwortet" + (f" ({first})" if first else "") + ".",
                    pytrace=False)
    return got + [None] * (len(labels) - len(got))


def _shown(answer) -> str:
    if answer is None:
        return "keine Antwort (Fehler)"
    if isinstance(answer, str):
        return repr(answer)
    return f"{answer.get('repr', '?')} (Typ {answer.get('type', '?')})"


def _problem_note(nb) -> str:
    errors = (nb.probe.get("answer_errors") or {})
    notes = []
    if errors.get("count"):
        notes.append(f"{errors['count']} Fragen endeten mit einem Fehler, z. B. {errors['first'][0]}")
    if nb.probe.get("answers_timeout"):
        notes.append(f"nach {nb.probe['answers_timeout']['answered']} Fragen war die Zeit für die Prüffragen "
                     "abgelaufen (answer ist zu langsam)")
    return (" (" + "; ".join(notes) + ")") if notes else ""


@pytest.mark.criterion("categories")
def test_answers_are_categories(nb, answers, categories):
    """Jede Antwort ist der Name einer der 20 Kategorien"""
    wrong = [a for a in answers if not (isinstance(a, str) and a in categories)]
    examples = ", ".join(list(dict.fromkeys(_shown(a) for a in wrong))[:5])
    hint = ""
    if any(isinstance(a, dict) and "int" in a.get("type", "") or isinstance(a, str) and a.strip().isdigit()
           for a in wrong):
        hint = (" Es sieht so aus, als gäbe Ihr Modell Clusternummern zurück: K-Means-Cluster sind keine "
                "Kategorien. Ordnen Sie jedem Cluster die Kategorie zu, die unter seinen Trainingstexten am "
                "häufigsten vorkommt (Mehrheitsentscheid), und geben Sie deren Namen zurück.")
    assert not wrong, (
        f"{len(wrong)} von {len(answers)} Antworten sind kein Kategoriename wie 'sci.space' (z. B. {examples})."
        + hint + _problem_note(nb)
    )


@pytest.mark.criterion("accuracy")
def test_accuracy_above_chance(nb, answers, labels, settings):
    """Die Antworten sind deutlich besser als geraten"""
    pairs = [(a, entry["group"]) for a, entry in zip(answers, labels) if entry["set"] == "plain"]
    accuracy = sum(a == group for a, group in pairs) / len(pairs)
    minimum = float(settings["query_min_accuracy"])
    assert accuracy >= minimum, (
        f"Ihr Modell beantwortet nur {accuracy:.0%} der Prüffragen mit der richtigen Kategorie; nötig sind "
        f"mindestens {minimum:.0%} (zufälliges Raten träfe 5 %). Prüfen Sie, ob die Antwort wirklich von der "
        "Frage abhängt und ob jedem K-Means-Cluster die Kategorie zugeordnet ist, die unter seinen "
        "Trainingstexten am häufigsten vorkommt (nicht eine feste Zuordnung von Clusternummer zu Kategorie)."
        + _problem_note(nb)
    )


def _agreement(answers, labels, variant: str) -> tuple[float, int]:
    base = {entry["key"]: a for a, entry in zip(answers, labels) if entry["set"] == "base"}
    pairs = [(a, base[entry["key"]]) for a, entry in zip(answers, labels) if entry["set"] == variant]
    same = sum(a is not None and a == b for a, b in pairs)
    return same / len(pairs), len(pairs)


@pytest.mark.criterion("stemming")
def test_inflection_does_not_change_answer(nb, answers, labels, settings):
    """Stemming/Lemmatisierung: Fragen, die sich nur in der Wortform unterscheiden, erhalten dieselbe Antwort"""
    agreement, count = _agreement(answers, labels, "inflected")
    minimum = float(settings["query_min_agreement"])
    assert agreement >= minimum, (
        f"Von {count} Prüffragen, die sich nur in der Wortform unterscheiden (z. B. Einzahl und Mehrzahl), "
        f"beantwortet Ihr Modell nur {agreement:.0%} gleich (nötig sind {minimum:.0%}). Reduzieren Sie in der "
        "Vorverarbeitung jedes Wort auf seinen Stamm (z. B. nltk.stem.PorterStemmer) oder seine Grundform "
        "(WordNetLemmatizer), beim Trainieren und beim Beantworten gleichermaßen." + _problem_note(nb)
    )


@pytest.mark.criterion("stopwords")
def test_stopwords_do_not_change_answer(nb, answers, labels, settings):
    """Stoppwörter: Fragen, die sich nur in zusätzlichen Stoppwörtern unterscheiden, erhalten dieselbe Antwort"""
    agreement, count = _agreement(answers, labels, "stopwords")
    minimum = float(settings["query_min_agreement"])
    assert agreement >= minimum, (
        f"Von {count} Prüffragen, die sich nur durch zusätzliche Stoppwörter (Füllwörter wie 'the', 'and', "
        f"'he') unterscheiden, beantwortet Ihr Modell nur {agreement:.0%} gleich (nötig sind {minimum:.0%}). "
        "Entfernen Sie in der Vorverarbeitung die Stoppwörter (nltk.corpus.stopwords.words('english')), "
        "beim Trainieren und beim Beantworten gleichermaßen." + _problem_note(nb)
    )


@pytest.mark.criterion("train_only")
def test_vocabulary_from_training_data_only(nb, answers, hidden_dir, settings):
    """Das Modell ist nur auf den Trainingsdaten angepasst (TF-IDF nicht auf den Testdaten)"""
    test_only = set(json.loads((hidden_dir / "query_test_only_words.json").read_text(encoding="utf-8")))
    found = (nb.probe.get("vocabularies") or {}).get("found", [])
    leaks = []
    for vocabulary in found:
        terms = {str(t).lower() for t in vocabulary.get("terms", [])}
        leaked = sum(1 for word in test_only if word in terms)
        leaks.append((leaked, vocabulary.get("where", "?")))
    worst = max(leaks, default=(0, ""))
    maximum = int(settings["query_max_test_only_terms"])
    assert worst[0] <= maximum, (
        f"Das Vokabular Ihres Modells ({worst[1]}) enthält Wörter, die nur in den Testdaten vorkommen: Der "
        "Vectorizer wurde (auch) auf den Testtexten angepasst. Rufen Sie fit bzw. fit_transform nur mit den "
        "Trainingstexten auf und für Fragen und Testtexte nur transform; sonst fließen Informationen aus den "
        "Testdaten ins Modell und die gemessene Genauigkeit ist zu optimistisch."
    )


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    assert not nb.errors(), nb.errors_message()
