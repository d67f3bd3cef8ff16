"""Probe of task 5, part 3, run in the student's kernel after the notebook: the student's claim and advice.

Everything here may be faked by the notebook (it runs after the student's code), so it reports only
- "printed_accuracy": the notebook's variable `accuracy` (the task asks to store the printed value there): the
  claim the rubric judges against the accuracy the grader measures itself;
- "training_data": which public split the texts the model was trained on come from (advice only): the items
  of trainer.train_dataset (or of `train_dataset` for a hand-written loop) are matched by their first tokens
  against the tokenized public train and test splits.
Whether the model was saved, and how well it classifies, is measured outside the kernel by the facts command
(probes/finetune_facts.py) on the folder `modell` the notebook left behind.
"""


def _grader_finetune_probe(namespace):
    import math

    from autograder.inside.probe import report

    prefix_tokens = 16
    tokenizer = namespace.get("tokenizer")

    def short(exc):
        return f"{type(exc).__name__}: {exc}"[:300]

    # 1. The accuracy the notebook stored (and printed).
    value = namespace.get("accuracy")
    printed = None
    try:
        if isinstance(value, dict):
            value = value.get("accuracy", value.get("eval_accuracy"))
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            printed = float(value)
    except Exception:  # noqa: BLE001
        printed = None
    report("printed_accuracy", {"value": printed, "defined": "accuracy" in namespace,
                                "type": type(namespace.get("accuracy")).__name__})

    # 2. Which split the model was trained on (advice).
    training = None
    trainer = namespace.get("trainer")
    dataset = getattr(trainer, "train_dataset", None) if trainer is not None else None
    dataset = dataset if dataset is not None else namespace.get("train_dataset")
    if dataset is not None and callable(tokenizer):
        try:
            from sklearn.datasets import fetch_20newsgroups

            def prefixes(splittexts):
                ids = tokenizer(list(splittexts), truncation=True, max_length=prefix_tokens + 2,
                                add_special_tokens=False)["input_ids"]
                return {tuple(i[:prefix_tokens]) for i in ids if i}

            special = set(tokenizer.all_special_ids)
            remove = ("headers", "footers", "quotes")
            public = {split: prefixes(fetch_20newsgroups(subset=split, remove=remove,
                                                         download_if_missing=False).data)
                      for split in ("train", "test")}
            counts = {"items": 0, "train_only": 0, "test_only": 0, "both": 0, "neither": 0}
            for index in range(min(len(dataset), 20000)):
                item = dataset[index]
                ids = item["input_ids"] if isinstance(item, dict) else item[0]
                ids = [int(t) for t in (ids.tolist() if hasattr(ids, "tolist") else ids) if int(t) not in special]
                key = tuple(ids[:prefix_tokens])
                if not key:
                    continue
                counts["items"] += 1
                where = (key in public["train"], key in public["test"])
                counts[{(True, False): "train_only", (False, True): "test_only", (True, True): "both",
                        (False, False): "neither"}[where]] += 1
            training = counts
        except Exception as exc:  # noqa: BLE001
            training = {"error": short(exc)}
    report("training_data", training)


_grader_finetune_probe(globals())
del _grader_finetune_probe
