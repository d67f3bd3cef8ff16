"""Fetch the real data into a runtime image at build time (network available then, never in the sandbox).

The same layout `grader data` builds offline on development machines, with the real contents:
nltk_data/ (punkt_tab, stopwords, wordnet), scikit_learn_data/ (the 20 Newsgroups corpus, as
fetch_20newsgroups caches it) and models/bert (bert-base-uncased). Usage: python fetch_data.py /opt/grader-offline
"""

import sys
from pathlib import Path


def main(target: Path) -> None:
    import nltk
    from huggingface_hub import snapshot_download
    from sklearn.datasets import fetch_20newsgroups

    for package in ("punkt_tab", "stopwords", "wordnet"):
        if not nltk.download(package, download_dir=str(target / "nltk_data"), quiet=True):
            raise SystemExit(f"NLTK data {package!r} could not be fetched")
    fetch_20newsgroups(data_home=str(target / "scikit_learn_data"), subset="all", download_if_missing=True)
    snapshot_download("bert-base-uncased", local_dir=str(target / "models" / "bert"),
                      allow_patterns=["config.json", "vocab.txt", "tokenizer*.json", "model.safetensors"])
    for path in [target, *target.rglob("*")]:  # the sandbox's unprivileged uid reads everything
        path.chmod(0o755 if path.is_dir() else 0o644)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
