"""Rubric for task 5, part 1: K-Means and DBSCAN on two data sets, plotted and compared.

Judged by what the plots show, not by the code's literal numbers: any parameters whose DBSCAN plot separates
the half moons pass; DBSCAN's default eps, which merges them, fails. Thresholds come from grader.toml.
"""

from __future__ import annotations

import re

import pytest
from sklearn.metrics import adjusted_rand_score

from autograder.release import TEXT_STUB
from plotted_clusters import DataSet, find_clusterings

pytestmark = pytest.mark.notebook("clustering")

DATASET_NAMES = {"blobs": "Blobs", "moons": "Halbmonde"}
ALGORITHM_NAMES = {"kmeans": "K-Means", "dbscan": "DBSCAN"}


@pytest.fixture(scope="module")
def datasets(data_dir):
    """The public points of each data set: what the plots are matched against (the self-check has them too)."""
    return [DataSet.load(name, data_dir) for name in DATASET_NAMES]


@pytest.fixture(scope="module")
def labelled(data_dir, hidden_dir):
    """The data sets with their true groups from hidden/: the criteria that use them are hidden."""
    return [DataSet.load(name, data_dir, hidden_dir) for name in DATASET_NAMES]


@pytest.fixture(scope="module")
def clusterings(notebooks, datasets):
    return find_clusterings(notebooks["clustering"].figures, datasets)


def _plot(clusterings, dataset: str, algorithm: str):
    """The last plot of this data set by this algorithm, if there is one with at least two colours."""
    shown = [c for c in clusterings if c.dataset == dataset and c.algorithm == algorithm and c.group_count >= 2]
    return shown[-1] if shown else None


def _label(dataset: str, algorithm: str) -> str:
    return f"{ALGORITHM_NAMES[algorithm]} – {DATASET_NAMES[dataset]}"


@pytest.mark.criterion("plots")
def test_all_four_plots(clusterings):
    """Beide Datensätze mit beiden Verfahren als farbige Streudiagramme dargestellt"""
    missing = [
        _label(d, a) for d in DATASET_NAMES for a in ALGORITHM_NAMES if _plot(clusterings, d, a) is None
    ]
    unnamed = [c for c in clusterings if c.algorithm is None]
    hint = (" Einige Streudiagramme nennen im Titel kein Verfahren (K-Means oder DBSCAN)."
            if unnamed else "")
    assert not missing, (
        "Es fehlen farbige Streudiagramme (Punkte nach Cluster eingefärbt) für: " + ", ".join(missing) + "." + hint
    )


@pytest.mark.criterion("axis_labels")
def test_axis_labels(clusterings):
    """Alle Clustering-Plots haben Titel und beschriftete Achsen"""
    assert clusterings, "Es wurden keine Streudiagramme der Datensätze gefunden, deren Beschriftung geprüft werden könnte."
    unlabeled = sorted({
        _label(c.dataset, c.algorithm) if c.algorithm else f"Plot der {DATASET_NAMES[c.dataset]}"
        for c in clusterings if not (c.xlabel.strip() and c.ylabel.strip() and c.title.strip())
    })
    assert not unlabeled, (
        "Diese Plots haben keinen Titel oder unbeschriftete Achsen: " + ", ".join(unlabeled)
        + ". Beschriften Sie jede Achse (plt.xlabel/plt.ylabel bzw. ax.set_xlabel/ax.set_ylabel) und geben Sie "
        "jedem Plot einen Titel."
    )


@pytest.mark.criterion("kmeans_blobs")
def test_kmeans_recovers_blobs(clusterings, labelled, settings):
    """K-Means findet die Gruppen der Blob-Daten"""
    plot = _plot(clusterings, "blobs", "kmeans")
    assert plot is not None, "Es gibt kein farbiges K-Means-Streudiagramm der Blob-Daten, das geprüft werden könnte."
    truth = next(d for d in labelled if d.name == "blobs").labels[plot.indices]
    agreement = adjusted_rand_score(truth, plot.groups)
    assert agreement >= float(settings["kmeans_blobs_min_ari"]), (
        f"Ihr K-Means-Plot der Blob-Daten zeigt {plot.group_count} Farbgruppen, die nicht mit den Gruppen der "
        f"Daten übereinstimmen (Übereinstimmung {agreement:.2f}, nötig sind "
        f"{float(settings['kmeans_blobs_min_ari']):.2f}). Prüfen Sie die Clusterzahl und ob Sie die Labels von "
        "K-Means zum Einfärben verwenden."
    )


@pytest.mark.criterion("dbscan_moons")
def test_dbscan_separates_moons(clusterings, labelled, settings):
    """DBSCAN trennt die beiden Halbmonde"""
    plot = _plot(clusterings, "moons", "dbscan")
    assert plot is not None, "Es gibt kein farbiges DBSCAN-Streudiagramm der Halbmond-Daten, das geprüft werden könnte."
    moons = next(d for d in labelled if d.name == "moons")
    truth = moons.labels[plot.indices]
    in_moons = truth >= 0
    moon_groups = {g for g, t in zip(plot.groups.tolist(), truth.tolist()) if t >= 0}
    agreement = adjusted_rand_score(truth[in_moons], plot.groups[in_moons])
    if len(moon_groups) == 1:
        pytest.fail(
            "Ihr DBSCAN-Plot der Halbmond-Daten zeigt beide Halbmonde in derselben Farbe, also als einen einzigen "
            "Cluster. Das passiert mit dem Standardwert eps=0.5: wählen Sie eps kleiner (Vorlesung: eps=0.2, "
            "min_samples=5).", pytrace=False,
        )
    assert agreement >= float(settings["dbscan_moons_min_ari"]), (
        f"Ihr DBSCAN-Plot der Halbmond-Daten trennt die beiden Halbmonde nicht sauber (Übereinstimmung "
        f"{agreement:.2f}, nötig sind {float(settings['dbscan_moons_min_ari']):.2f}). Prüfen Sie eps und "
        "min_samples (Vorlesung: eps=0.2, min_samples=5)."
    )


@pytest.mark.criterion("dbscan_noise")
def test_dbscan_noise_is_shown(clusterings):
    """Die Rauschpunkte von DBSCAN sind in den Plots zu sehen"""
    plots = [p for p in (_plot(clusterings, d, "dbscan") for d in DATASET_NAMES) if p is not None]
    assert plots, "Es gibt keine DBSCAN-Streudiagramme, in denen die Rauschpunkte geprüft werden könnten."
    incomplete = [p for p in plots if p.coverage < 0.999]
    assert not incomplete, (
        "In Ihren DBSCAN-Plots fehlen Punkte (" + ", ".join(
            f"{DATASET_NAMES[p.dataset]}: {round((1 - p.coverage) * 100)} % der Punkte" for p in incomplete)
        + "). Vermutlich haben Sie die Rauschpunkte (Label -1) weggelassen; sie gehören zum Ergebnis von DBSCAN "
        "und müssen angezeigt werden, z. B. in Schwarz."
    )


@pytest.mark.criterion("comparison")
def test_written_comparison(nb, clusterings, settings):
    """Vergleich der Verfahren in Markdown nach den Plots"""
    figure_cells = [f.cell_index for f in nb.figures]
    last_plot = max(figure_cells, default=-1)
    texts = [text for index, text in nb.markdown_cells() if index > last_plot]
    words = re.findall(r"\w+", " ".join(texts))
    mentions = " ".join(texts)
    minimum = int(settings["comparison_min_words"])
    assert len(words) >= minimum and TEXT_STUB not in mentions and "YOUR ANSWER HERE" not in mentions, (
        f"Nach den Plots fehlt der schriftliche Vergleich der beiden Verfahren in einer Markdown-Zelle "
        f"(gefunden: {len(words)} Wörter, erwartet mindestens {minimum})."
    )
    assert re.search(r"k[\s_-]*means", mentions, re.I) and re.search(r"db[\s_-]*scan", mentions, re.I), (
        "Ihr Vergleich sollte beide Verfahren, K-Means und DBSCAN, beim Namen nennen und einander gegenüberstellen."
    )


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    assert not nb.errors(), nb.errors_message()
