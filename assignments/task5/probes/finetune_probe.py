"""Probe of task 5, part 3, run in the student's kernel after the notebook: the saved model answers unseen posts.

Reports (the rubric judges them outside the sandbox, where the hidden labels are; nothing here knows them):
- "saved_model": whether model and tokenizer load fresh from disk out of MODEL_DIR (default "modell"), with
  AutoModelForSequenceClassification / AutoTokenizer, as anyone who gets the folder would load them.
- "hidden_predictions": the category index (and name, where the notebook names them) the model predicts for
  each text of /grader/probe-data/texts.json (posts generated with another seed, not in the public corpus).
  The saved model answers; if none was saved, the notebook's trained model in memory answers instead, so that
  a missing save fails only the criterion about saving.
- "test_recomputed": the same model's accuracy on the notebook's own test split (test_texts, test_labels,
  public data), to compare with what the notebook printed.
- "printed_accuracy": the notebook's variable `accuracy` (the task asks to store the printed value there).
- "training_data": which public split the texts the model was trained on come from: the items of
  trainer.train_dataset (or of `train_dataset` for a hand-written loop) are matched by their first tokens
  against the tokenized public train and test splits.
"""


def _grader_finetune_probe(namespace):
    import json
    import math
    import os

    from autograder.inside.probe import probe_data, report

    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    prefix_tokens = 16
    model_dir = namespace.get("MODEL_DIR") if isinstance(namespace.get("MODEL_DIR"), str) else "modell"
    max_length = namespace.get("MAX_LENGTH")
    max_length = int(max_length) if isinstance(max_length, int) and 8 <= max_length <= 512 else 128

    def short(exc):
        return f"{type(exc).__name__}: {exc}"[:300]

    # 1. The saved model, loaded fresh from disk.
    saved = {"folder": model_dir, "exists": os.path.isdir(model_dir), "model": False, "tokenizer": False,
             "error": None}
    model = tokenizer = None
    source = None
    if saved["exists"]:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
            saved["model"] = True
            saved["num_labels"] = int(model.config.num_labels)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            saved["error"] = short(exc)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            saved["tokenizer"] = True
        except Exception as exc:  # noqa: BLE001
            saved["error"] = saved["error"] or short(exc)
    if model is not None and tokenizer is not None:
        source = "saved"
    else:
        # Fall back to the trained model in memory (the notebook's Trainer, or a variable named model).
        trainer = namespace.get("trainer")
        memory_model = getattr(trainer, "model", None)
        memory_model = memory_model if memory_model is not None else namespace.get("model")
        memory_tokenizer = namespace.get("tokenizer")
        if isinstance(memory_model, torch.nn.Module) and callable(memory_tokenizer):
            model, tokenizer, source = memory_model, memory_tokenizer, "memory"
        else:
            model = tokenizer = None
    report("saved_model", saved)

    def predict(texts):
        model.eval()
        device = next(model.parameters()).device
        found = []
        with torch.no_grad():
            for start in range(0, len(texts), 32):
                batch = tokenizer(list(texts[start:start + 32]), truncation=True, padding=True,
                                  max_length=max_length, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                found.extend(int(i) for i in model(**batch).logits.argmax(-1).tolist())
        return found

    # 2. The hidden held-out texts.
    texts = json.loads(probe_data("texts.json").read_text(encoding="utf-8"))
    predictions = {"source": source, "indices": None, "names": None, "error": None}
    if model is not None:
        try:
            indices = predict(texts)
            predictions["indices"] = indices
            names = namespace.get("categories")
            if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
                predictions["names"] = [names[i] if 0 <= i < len(names) else None for i in indices]
        except Exception as exc:  # noqa: BLE001
            predictions["error"] = short(exc)
    report("hidden_predictions", predictions)

    # 3. The same model on the notebook's own test split.
    recomputed = {"source": source, "accuracy": None, "n": 0, "error": None}
    test_texts, test_labels = namespace.get("test_texts"), namespace.get("test_labels")
    if model is not None and test_texts is not None and test_labels is not None:
        try:
            test_texts, test_labels = list(test_texts), [int(y) for y in test_labels]
            if test_texts and len(test_texts) == len(test_labels):
                found = predict(test_texts)
                recomputed["accuracy"] = float(np.mean(np.array(found) == np.array(test_labels)))
                recomputed["n"] = len(test_texts)
        except Exception as exc:  # noqa: BLE001
            recomputed["error"] = short(exc)
    report("test_recomputed", recomputed)

    # 4. The accuracy the notebook stored (and printed).
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

    # 5. Which split the model was trained on.
    training = None
    trainer = namespace.get("trainer")
    dataset = getattr(trainer, "train_dataset", None) if trainer is not None else None
    dataset = dataset if dataset is not None else namespace.get("train_dataset")
    if dataset is not None and tokenizer is not None:
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
