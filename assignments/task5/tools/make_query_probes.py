"""Generate the hidden queries of task 5, part 2 (query answering): public texts and hidden labels.

Run from the repository root: `.venv/bin/python assignments/task5/tools/make_query_probes.py`. Deterministic;
the outputs are committed:

- probe-data/query/queries.json: the query texts only (a JSON list of strings), which the probe asks the
  student's model inside the sandbox;
- hidden/query_labels.json: per query its group and the set it belongs to, read only by the rubric;
- hidden/query_test_only_words.json: names that occur in the public test split and never in the training split
  (a vocabulary fitted on the training posts cannot contain them).

The sets: "plain" are short posts written like the corpus (another seed, so none is a post of the public
cache), for accuracy. "base" queries name three of a group's rarer keywords (autograder.offline.newsgroups
KEYWORDS, which the corpus uses only in the singular); "inflected" is each base query with the keywords in the
plural, a form the corpus never uses: with stemming or lemmatising it is the same query, without it the model
sees none of its keywords. "stopwords" is each base query with function words added that another group uses
often (SINK_STOPWORDS): with stopword removal it is the same query, without it the function words pull the
answer to that group.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from autograder.offline.newsgroups import KEYWORDS, SINK_STOPWORDS, TEST_NAMES, TOPICS, _plural, post_body

TASK = Path(__file__).resolve().parents[1]
SEED = 52026
PLAIN_PER_GROUP = 10
BASE_PER_GROUP = 3
BASE_TEMPLATES = [
    "What do you think about the {0}, the {1} and the {2}",
    "Any experience with the {0}, the {1} or the {2}",
    "Looking for information on the {0}, the {1} and the {2}",
    "Where can I find the {0}, the {1} and the {2}",
]


def _stopword_phrase(rng: random.Random, words: list[str], count: int) -> str:
    return " ".join(rng.choice(words) for _ in range(count))


def build() -> tuple[list[str], list[dict]]:
    rng = random.Random(SEED)
    entries: list[tuple[str, dict]] = []
    for group in TOPICS:
        for _ in range(PLAIN_PER_GROUP):
            entries.append((post_body(rng, group, (2, 3)), {"group": group, "set": "plain"}))
    for group in TOPICS:
        sinks = [g for g in SINK_STOPWORDS if g != group]
        for number in range(BASE_PER_GROUP):
            keywords = rng.sample(KEYWORDS[group], 3)
            template = rng.choice(BASE_TEMPLATES)
            base = template.format(*keywords) + "?"
            key = f"{group}/{number}"
            entries.append((base, {"group": group, "set": "base", "key": key}))
            entries.append((template.format(*(_plural(k) for k in keywords)) + "?",
                            {"group": group, "set": "inflected", "key": key}))
            words = SINK_STOPWORDS[sinks[number % len(sinks)]]
            padded = (f"{_stopword_phrase(rng, words, 5).capitalize()} {base[0].lower()}{base[1:-1]} "
                      f"{_stopword_phrase(rng, words, 7)}?")
            entries.append((padded, {"group": group, "set": "stopwords", "key": key}))
    rng.shuffle(entries)
    return [text for text, _ in entries], [label for _, label in entries]


def main() -> None:
    texts, labels = build()
    (TASK / "probe-data" / "query").mkdir(parents=True, exist_ok=True)
    (TASK / "hidden").mkdir(exist_ok=True)
    (TASK / "probe-data" / "query" / "queries.json").write_text(
        json.dumps(texts, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    (TASK / "hidden" / "query_labels.json").write_text(
        json.dumps(labels, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    (TASK / "hidden" / "query_test_only_words.json").write_text(
        json.dumps(sorted(TEST_NAMES), indent=0) + "\n", encoding="utf-8")
    print(f"{len(texts)} queries")


if __name__ == "__main__":
    main()
