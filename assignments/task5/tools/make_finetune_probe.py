"""Generate task 5 part 3's hidden held-out split once (the files are committed; this is provenance).

The same generator as the offline 20 Newsgroups stand-in (autograder.offline.newsgroups), with another seed,
so the texts are not in the public cache the notebook trains and tests on. Each text is a post's body as
fetch_20newsgroups(remove=("headers", "footers", "quotes")) hands it to the notebook. The texts go to
probe-data/finetune/ (inside the sandbox the saved model predicts them); their categories go to hidden/
(read only by the rubric, outside the sandbox). In a production image with the real corpus this split stays
generated: it tests the saved model on unseen posts of the same 20 topics.

    .venv/bin/python assignments/task5/tools/make_finetune_probe.py
"""

import json
import random
from pathlib import Path

from autograder.offline.newsgroups import TOPICS, post_body

SEED = 20261207
PER_GROUP = 10
TASK = Path(__file__).resolve().parents[1]


def main() -> None:
    rng = random.Random(SEED)
    groups = sorted(TOPICS)  # fetch_20newsgroups numbers the categories in this (alphabetical) order
    items = [(post_body(rng, group), group) for group in groups for _ in range(PER_GROUP)]
    rng.shuffle(items)
    texts = [text for text, _ in items]
    labels = [group for _, group in items]
    out = TASK / "probe-data" / "finetune"
    out.mkdir(parents=True, exist_ok=True)
    (out / "texts.json").write_text(json.dumps(texts, indent=1) + "\n", encoding="utf-8")
    (TASK / "hidden" / "finetune_labels.json").write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    print(f"{len(texts)} texts in {len(groups)} groups")


if __name__ == "__main__":
    main()
