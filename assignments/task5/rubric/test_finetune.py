"""Rubric for task 5, part 3: a BERT classifier fine-tuned on 20 Newsgroups, evaluated and saved.

The probe (probes/finetune_probe.py) ran in the student's kernel: it loaded the saved model fresh from the
folder `modell`, let it classify held-out posts whose categories only hidden/ knows, recomputed the model's
accuracy on the notebook's own test split and looked at which split the trained-on texts come from. Here the
accuracy on the held-out posts is recomputed against the hidden labels; thresholds come from grader.toml.

Which accuracies are comparable: the printed `accuracy` (the notebook's test split) is compared with the
probe's recomputation of the same model on the same texts, so only rounding and padding differ and the
tolerance is small (an accuracy taken on the training split, or from another model, differs by more). Only if
the notebook's test split is not available is the held-out accuracy the reference; it is another sample of
200 posts, so the tolerance is then wider (sampling error of two small samples).
"""

from __future__ import annotations

import json
import re

import pytest


pytestmark = pytest.mark.notebook("finetune")

UNAVAILABLE = ("Ihr Modell konnte die zurückgehaltenen Beiträge nicht klassifizieren: es wurde weder im Ordner "
               "`modell` gespeichert noch als `trainer` bzw. `model` mit einem `tokenizer` im Notebook gefunden.")


@pytest.fixture(scope="module")
def hidden_labels(hidden_dir):
    labels = json.loads((hidden_dir / "finetune_labels.json").read_text(encoding="utf-8"))
    categories = sorted(set(labels))  # fetch_20newsgroups numbers the categories alphabetically
    return labels, categories


def _hidden_accuracy(nb, hidden_labels) -> float | None:
    labels, categories = hidden_labels
    predictions = nb.probe.get("hidden_predictions") or {}
    indices = predictions.get("indices")
    if not isinstance(indices, list) or len(indices) != len(labels):
        return None
    truth = [categories.index(label) for label in labels]
    return sum(int(p == t) for p, t in zip(indices, truth)) / len(labels)


@pytest.mark.criterion("model_saved")
def test_model_saved(nb):
    """Modell und Tokenizer im Ordner `modell` gespeichert und ladbar"""
    saved = nb.probe.get("saved_model")
    assert saved is not None, "Das gespeicherte Modell konnte nicht geprüft werden (das Notebook lief nicht bis zum Ende)."
    assert saved.get("exists"), (
        "Im Ordner `modell` wurde kein gespeichertes Modell gefunden. Speichern Sie das trainierte Modell und den "
        "Tokenizer am Ende mit `trainer.save_model(MODEL_DIR)` (oder `model.save_pretrained(MODEL_DIR)`) und "
        "`tokenizer.save_pretrained(MODEL_DIR)`."
    )
    missing = [name for name, key in (("das Modell", "model"), ("der Tokenizer", "tokenizer")) if not saved.get(key)]
    assert not missing, (
        "Aus dem Ordner `modell` ließ sich " + " und ".join(missing) + " nicht mit `from_pretrained` laden"
        + (f" ({saved['error']})" if saved.get("error") else "")
        + ". Speichern Sie beide mit `save_pretrained` bzw. `trainer.save_model`, nicht mit pickle oder torch.save."
    )
    assert saved.get("num_labels") == 20, (
        f"Das gespeicherte Modell hat {saved.get('num_labels')} Ausgaben statt 20 (eine je Kategorie): laden Sie es "
        "mit `num_labels=20`."
    )


@pytest.mark.criterion("heldout_accuracy")
def test_heldout_accuracy(nb, hidden_labels, settings):
    """Das Modell klassifiziert unbekannte Beiträge deutlich besser als der Zufall"""
    predictions = nb.probe.get("hidden_predictions") or {}
    accuracy = _hidden_accuracy(nb, hidden_labels)
    if accuracy is None:
        detail = f" ({predictions['error']})" if predictions.get("error") else ""
        pytest.fail(UNAVAILABLE if not predictions.get("source") else
                    "Ihr Modell konnte die zurückgehaltenen Beiträge nicht klassifizieren" + detail + ".",
                    pytrace=False)
    minimum = float(settings["finetune_min_accuracy"])
    assert accuracy >= minimum, (
        f"Ihr Modell ordnet nur {accuracy:.0%} von {len(hidden_labels[0])} Beiträgen, die es noch nie gesehen hat, "
        f"der richtigen Kategorie zu (nötig sind {minimum:.0%}, Zufall wären 5 %). Prüfen Sie, ob das Modell "
        "wirklich trainiert wurde (num_train_epochs=EPOCHS, learning_rate=LEARNING_RATE) und ob Texte und Labels "
        "zusammenpassen."
    )


@pytest.mark.criterion("accuracy_reported")
def test_printed_accuracy_matches(nb, hidden_labels, settings):
    """Die ausgegebene Genauigkeit ist die des Modells auf den Testdaten"""
    printed = (nb.probe.get("printed_accuracy") or {})
    value = printed.get("value")
    assert printed.get("defined"), (
        "Die Variable `accuracy` fehlt. Speichern Sie die Genauigkeit auf den Testdaten als Zahl zwischen 0 und 1 "
        "in `accuracy` und geben Sie sie aus."
    )
    assert value is not None, (
        f"`accuracy` ist keine Zahl (sondern {printed.get('type')}). Speichern Sie die Genauigkeit als Zahl "
        "zwischen 0 und 1, z. B. `accuracy = metrics[\"eval_accuracy\"]`."
    )
    if 1 < value <= 100:
        value /= 100  # given in percent
    recomputed = nb.probe.get("test_recomputed") or {}
    if recomputed.get("accuracy") is not None:
        reference, where = float(recomputed["accuracy"]), f"auf Ihren Testdaten (`test_texts`, {recomputed['n']} Beiträge)"
        tolerance = float(settings["finetune_accuracy_tolerance"])
    else:
        reference = _hidden_accuracy(nb, hidden_labels)
        assert reference is not None, UNAVAILABLE
        where = "auf zurückgehaltenen Beiträgen"
        tolerance = float(settings["finetune_heldout_tolerance"])
    assert abs(value - reference) <= tolerance, (
        f"Sie geben eine Genauigkeit von {value:.3f} an, Ihr Modell erreicht {where} aber {reference:.3f}. "
        "Berechnen Sie die Genauigkeit mit dem trainierten Modell auf `test_dataset`, nicht auf den "
        "Trainingsdaten (dort ist sie zu optimistisch)."
    )


@pytest.mark.criterion("trained_on_train_split")
def test_trained_on_training_split(nb, settings):
    """Das Modell wurde auf den Trainingsdaten trainiert, nicht auf den Testdaten"""
    training = nb.probe.get("training_data")
    if not training or "error" in training or not training.get("items"):
        return  # no training dataset to inspect (other names than the task's): nothing can be objected
    share = training["test_only"] / training["items"]
    assert share <= float(settings["finetune_max_test_share"]), (
        f"{share:.0%} der Beiträge, auf denen Ihr Modell trainiert wurde, stammen aus dem Test-Split. Trainieren Sie "
        "auf `train_dataset` und werten Sie auf `test_dataset` aus: eine Genauigkeit auf Daten, die das Modell im "
        "Training gesehen hat, sagt nichts darüber, wie gut es unbekannte Texte klassifiziert."
    )


@pytest.mark.criterion("training")
def test_model_is_trained(nb):
    """Das Modell wird mit dem Trainer oder einer Trainingsschleife trainiert"""
    code = nb.code()
    with_trainer = re.search(r"\bTrainer\s*\(", code) and re.search(r"\.train\s*\(", code)
    with_loop = re.search(r"\.backward\s*\(", code) and re.search(r"\.step\s*\(", code)
    assert with_trainer or with_loop, (
        "Im Notebook wird kein Modell trainiert: erzeugen Sie einen `Trainer` und rufen Sie `trainer.train()` auf "
        "(oder schreiben Sie eine Trainingsschleife mit `loss.backward()` und `optimizer.step()`)."
    )


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    assert not nb.errors(), nb.errors_message()
