"""`grader data` feeds the real loaders offline, inside the sandbox (which has no network at all)."""

from __future__ import annotations

import pytest

from conftest import REPO, moodle_zip, notebook
from test_pipeline import _executed

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

LOADERS = notebook(
    """
    import nltk
    from nltk.corpus import stopwords, wordnet
    from nltk.stem import WordNetLemmatizer
    print(nltk.word_tokenize("Dr. Smith didn't go home. He was tired."))
    print(nltk.sent_tokenize("Dr. Smith went home. He was tired."))
    print("the" in stopwords.words("english"), WordNetLemmatizer().lemmatize("geese"), len(wordnet.synsets("car")) > 0)
    """,
    """
    from sklearn.datasets import fetch_20newsgroups
    train = fetch_20newsgroups(subset="train", remove=("headers", "footers", "quotes"), download_if_missing=False)
    test = fetch_20newsgroups(subset="test", download_if_missing=False)
    print(len(train.target_names), len(train.data), len(test.data), "From:" in test.data[0], "From:" in train.data[0])
    """,
    """
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    tokenizer = AutoTokenizer.from_pretrained("/opt/grader-offline/models/bert")
    model = AutoModelForSequenceClassification.from_pretrained("/opt/grader-offline/models/bert", num_labels=20)
    print(type(model).__name__, tokenizer("hello world")["input_ids"][:2])
    print("fertig")
    """,
)


def test_loaders_work_offline_in_the_sandbox(sandboxcheck, tmp_path):
    """punkt_tab, stopwords, wordnet, fetch_20newsgroups and from_pretrained all load with no network."""
    assert (REPO / ".offline-data" / "manifest.json").exists(), "run `grader data` (make test does)"
    config = sandboxcheck.config_path
    config.write_text(config.read_text().replace("cell_timeout = 8", "cell_timeout = 90").replace(
        "notebook_timeout = 25", "notebook_timeout = 180").replace("memory_mb = 768", "memory_mb = 2048"))
    archive = moodle_zip(tmp_path / "m.zip", {"1000001": {"check.ipynb": LOADERS}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    executed = _executed(sandboxcheck, "1000001")
    printed = ["".join(o.get("text", "") for o in c.get("outputs", []) if o.get("name") == "stdout")
               for c in executed["cells"] if c["cell_type"] == "code" and c.get("outputs")]
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    assert printed[0].splitlines() == [
        "['Dr.', 'Smith', 'did', \"n't\", 'go', 'home', '.', 'He', 'was', 'tired', '.']",
        "['Dr. Smith went home.', 'He was tired.']",
        "True goose True",
    ]
    assert printed[1].strip() == "20 2200 1400 True False"
    assert printed[2].startswith("BertForSequenceClassification [101,")
