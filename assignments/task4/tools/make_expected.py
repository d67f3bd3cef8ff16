"""Compute task 4's expected NLTK results from data/text.txt into hidden/expected.json (committed; this is provenance).

The rubric runs outside the sandbox without NLTK data, so the word statistics it compares with are computed here,
once, with exactly the pipeline the task text prescribes and the NLTK data the sandbox has (`grader data` writes
it; its English stopword list is scikit-learn's). Rerun this after changing the text or the offline data:

    NLTK_DATA=.offline-data/nltk_data .venv/bin/python assignments/task4/tools/make_expected.py

Besides the correct result it stores what the typical mistakes produce (no stemming, stopwords kept, stemmed
before removing stopwords, not lower-cased, punctuation kept), so the rubric can name the mistake. It also
checks that the text is robust to valid variations: a regex tokenizer gives the same stems as word_tokenize
(the text has no apostrophes, hyphens or abbreviations), and the 10th most frequent stem is clearly ahead of
the 11th, so the top 10 is unambiguous.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import nltk
from nltk.corpus import stopwords
from nltk.stem import PorterStemmer

TASK = Path(__file__).resolve().parents[1]
TOP = 10
MIN_GAP = 2  # count of the 10th stem minus count of the 11th


def pipeline(text: str, *, lower=True, alpha=True, remove_stopwords=True, stem=True, stem_first=False,
             tokenize=nltk.word_tokenize) -> list[str]:
    stop = set(stopwords.words("english"))
    stemmer = PorterStemmer()
    tokens = tokenize(text)
    words = [t.lower() if lower else t for t in tokens if t.isalpha() or not alpha]
    if stem_first:
        return [s for s in (stemmer.stem(w) for w in words) if s not in stop]
    kept = [w for w in words if w not in stop] if remove_stopwords else words
    return [stemmer.stem(w) for w in kept] if stem else kept


def main() -> None:
    text = (TASK / "data" / "text.txt").read_text(encoding="utf-8")
    stop = stopwords.words("english")
    stems = pipeline(text)
    counts = Counter(stems)
    ranked = counts.most_common()
    assert ranked[TOP - 1][1] - ranked[TOP][1] >= MIN_GAP, f"top {TOP} is not clearly separated: {ranked[:TOP + 1]}"
    regex = pipeline(text, tokenize=lambda t: re.findall(r"[A-Za-z]+", t))
    assert Counter(regex) == counts, "a regex tokenizer gives other stems: the text has tokenizer-dependent words"

    words = [t.lower() for t in nltk.word_tokenize(text) if t.isalpha()]
    in_text = sorted({w for w in words if w in set(stop)})
    stemmer = PorterStemmer()
    leftovers = set(in_text) | {stemmer.stem(w) for w in in_text}
    assert not leftovers & set(counts), "a stopword's stem equals a content stem: diagnosis would mislead"
    expected = {
        "source": "data/text.txt",
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "stopwords": f"nltk stopwords.words('english'): {len(stop)} words, sha256 "
                     + hashlib.sha256("\n".join(sorted(stop)).encode()).hexdigest(),
        "stems": dict(sorted(counts.items())),
        "n_stems": len(stems),
        "top_words": [[w, c] for w, c in ranked[:TOP]],
        "variants": {
            "no_stemming": dict(Counter(pipeline(text, stem=False))),
            "stopwords_kept": dict(Counter(pipeline(text, remove_stopwords=False))),
            "stemmed_before_stopwords": dict(Counter(pipeline(text, stem_first=True))),
            "not_lowercased": dict(Counter(pipeline(text, lower=False))),
            "punctuation_kept": dict(Counter(pipeline(text, alpha=False))),
        },
        # Stopwords that occur in the text, and their stems: found in a student's stems, they were not removed.
        "stopwords_in_text": sorted(leftovers),
    }
    (TASK / "hidden").mkdir(exist_ok=True)
    target = TASK / "hidden" / "expected.json"
    target.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{target}: {len(stems)} stems, top {TOP}: {ranked[:TOP]}")


if __name__ == "__main__":
    main()
