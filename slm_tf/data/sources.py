"""Named datasets and user files, turned into validated train/validation/test splits."""
import collections
import dataclasses
import hashlib
import json
import os
from typing import Callable, Dict, List, Optional

import numpy as np
from absl import logging

from slm_tf.data.config import ALL, SPLITS, DataConfig  # noqa: F401  (ALL, SPLITS re-exported)
from slm_tf.data.readers import DataError, Example, ReadReport, read_labelled
from slm_tf.registry import Registry
from slm_tf.trust import pii

EMBEDDED_DIR = os.path.join(os.path.dirname(__file__), "embedded")
OOS_LABEL = "oos"  # clinc150's out-of-scope label (abstention treats it as "none of mine")


@dataclasses.dataclass
class Splits:
    """Validated splits plus everything needed to describe them."""
    name: str
    train: List[Example]
    validation: List[Example]
    test: List[Example]
    label_names: List[str]
    skipped: collections.Counter
    citation: str = ""
    license: str = ""
    files: List[str] = dataclasses.field(default_factory=list)
    pii_redacted: Optional[collections.Counter] = None  # replacements per type, when redacting

    def split(self, name: str) -> List[Example]:
        """One split's examples; ``all`` is train, validation and test in that order."""
        if name == ALL:
            return self.train + self.validation + self.test
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {SPLITS + (ALL,)}")
        return getattr(self, name)

    def sizes(self) -> Dict[str, int]:
        return {s: len(self.split(s)) for s in SPLITS}


DATASETS: Registry[Callable[[DataConfig], Splits]] = Registry("dataset")


def stratified_split(examples: List[Example], fraction: float, seed: int):
    """Splits ``examples`` into (kept, held_out) with ``fraction`` of each class held out.

    Deterministic for a seed; classes with fewer than 3 examples stay whole in ``kept`` so
    every class can still be learned.
    """
    by_label = collections.defaultdict(list)
    for i, ex in enumerate(examples):
        by_label[ex.label].append(i)
    rng = np.random.RandomState(seed)
    held = set()
    for label in sorted(by_label):
        idx = by_label[label]
        if len(idx) < 3 or fraction <= 0:
            continue
        perm = rng.permutation(len(idx))
        n = max(1, int(round(len(idx) * fraction)))
        held.update(idx[j] for j in perm[:n])
    kept = [ex for i, ex in enumerate(examples) if i not in held]
    out = [ex for i, ex in enumerate(examples) if i in held]
    return kept, out


def _check_labels(name: str, splits: Dict[str, List[Example]], label_names: List[str],
                  on_bad_row: str, skipped: collections.Counter) -> Dict[str, List[Example]]:
    known = set(label_names)
    if len(known) < 2:
        where = splits["train"][0].source.rsplit(":", 1)[0] if splits["train"] else name
        raise DataError(f"{where}: the training data has only one class ({sorted(known)}). "
                        "Fix: a classifier needs at least two labels; check --label_column.")
    out = {}
    for split, exs in splits.items():
        keep = []
        for ex in exs:
            if ex.label in known:
                keep.append(ex)
            elif on_bad_row == "skip":
                skipped["label_unseen_in_train"] += 1
                logging.warning("skipping %s: label %r does not occur in the training split",
                                ex.source, ex.label)
            else:
                raise DataError(
                    f"{ex.source}: label {ex.label!r} in the {split} split never occurs in the "
                    f"training split, so the model cannot learn it. Fix: add training examples "
                    f"of it or remove the row, or pass --on_bad_row=skip to skip such rows "
                    f"(they are counted and logged).")
        out[split] = keep
    return out


def _hold_out_oos(name: str, train: List[Example], share: float, seed: int):
    """(train, moved): ``share`` of the training examples labelled :data:`OOS_LABEL`, drawn
    with ``seed``, moved out of ``train`` (``--oos_validation_share``)."""
    oos = [i for i, ex in enumerate(train) if ex.label == OOS_LABEL]
    n = int(round(len(oos) * share))
    if n == 0:
        raise DataError(f"{name}: --oos_validation_share={share} moves no training example: "
                        f"the training split has {len(oos)} labelled {OOS_LABEL!r}. Fix: use "
                        "data with out-of-scope training examples (e.g. --data=clinc150_oos) "
                        "or --oos_validation_share=0.")
    moved = set(np.random.RandomState(seed).permutation(oos)[:n].tolist())
    return ([ex for i, ex in enumerate(train) if i not in moved],
            [ex for i, ex in enumerate(train) if i in moved])


def assemble(name: str, train: ReadReport, validation: Optional[ReadReport],
             test: Optional[ReadReport], cfg: DataConfig,
             label_names: Optional[List[str]] = None, **meta) -> Splits:
    """Carves missing validation/test splits (stratified) and validates the labels."""
    skipped = collections.Counter(train.skipped)
    train_ex = train.examples
    test_ex = None
    if test is not None:
        skipped.update(test.skipped)
        test_ex = test.examples
    else:
        train_ex, test_ex = stratified_split(train_ex, cfg.test_fraction, cfg.split_seed)
    if validation is not None:
        skipped.update(validation.skipped)
        val_ex = validation.examples
    else:
        # A different seed stream keeps validation disjoint from the test draw.
        train_ex, val_ex = stratified_split(train_ex, cfg.validation_fraction,
                                            cfg.split_seed + 1)
    if cfg.oos_validation_share > 0:
        train_ex, moved = _hold_out_oos(name, train_ex, cfg.oos_validation_share,
                                        cfg.split_seed + 2)
        val_ex = val_ex + moved
    if label_names is None:
        label_names = sorted({ex.label for ex in train_ex})
    checked = _check_labels(name, {"train": train_ex, "validation": val_ex, "test": test_ex},
                            label_names, cfg.on_bad_row, skipped)
    return Splits(name=name, label_names=list(label_names), skipped=skipped, **checked, **meta)


@DATASETS.register("banking77")
def banking77(cfg: DataConfig) -> Splits:
    """banking77, embedded in the package (CC BY 4.0, Casanueva et al. 2020)."""
    root = os.path.join(EMBEDDED_DIR, "banking77")
    with open(os.path.join(root, "categories.json"), encoding="utf-8") as f:
        labels = json.load(f)
    read = lambda split: read_labelled(os.path.join(root, f"{split}.csv"), "text", "category",
                                       "csv", cfg.on_bad_row)
    return assemble("banking77", read("train"), None, read("test"), cfg, labels,
                    citation="Casanueva et al., Efficient Intent Detection with Dual Sentence "
                    "Encoders, NLP4ConvAI 2020", license="CC BY 4.0",
                    files=[os.path.join(root, f) for f in ("train.csv", "test.csv",
                                                           "categories.json")])


def _root(cfg: DataConfig, name: str) -> str:
    root = os.path.join(cfg.data_root, name)
    if not cfg.data_root or not os.path.isdir(root):
        raise DataError(f"{root or name}: dataset folder not found. Fix: pass --data_root=<folder "
                        f"that holds {name}/> (the data is not shipped in the package).")
    return root


def _clinc150(cfg: DataConfig, name: str, with_oos: bool) -> Splits:
    path = os.path.join(_root(cfg, "clinc150"), "data_full.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    def report(key):
        keys = (key, f"oos_{key}") if with_oos else (key,)
        return ReadReport([Example(t, l, f"{path}:{k}[{i}]")
                           for k in keys for i, (t, l) in enumerate(data[k])])
    train = report("train")
    return assemble(name, train, report("val"), report("test"), cfg,
                    sorted({e.label for e in train.examples}),
                    citation="Larson et al., An Evaluation Dataset for Intent Classification and "
                    "Out-of-Scope Prediction, EMNLP 2019", license="CC BY 3.0", files=[path])


@DATASETS.register("clinc150")
def clinc150(cfg: DataConfig) -> Splits:
    """CLINC150 in-scope intents (CC BY 3.0, Larson et al. 2019) from ``data_full.json``."""
    return _clinc150(cfg, "clinc150", with_oos=False)


@DATASETS.register("clinc150_oos")
def clinc150_oos(cfg: DataConfig) -> Splits:
    """CLINC150 plus its out-of-scope splits (``oos_train/val/test``) as a 151st label ``oos``."""
    return _clinc150(cfg, "clinc150_oos", with_oos=True)


@DATASETS.register("medical_abstracts")
def medical_abstracts(cfg: DataConfig) -> Splits:
    """Medical abstracts, 5 classes (CC BY-SA 3.0, Schopf et al. 2022), split 80/10/10 here."""
    root = _root(cfg, "medical_abstracts")
    path = os.path.join(root, "medical_tc_test.csv")
    names = {}
    with open(os.path.join(root, "medical_tc_labels.csv"), encoding="utf-8") as f:
        for line in f.read().splitlines()[1:]:
            key, value = line.split(",", 1)
            names[key] = value
    rep = read_labelled(path, "medical_abstract", "condition_label", "csv", cfg.on_bad_row)
    for ex in rep.examples:
        ex.label = names.get(ex.label, ex.label)
    return assemble("medical_abstracts", rep, None, None, cfg, list(names.values()),
                    citation="Schopf, Braun, Matthes, Evaluating Unsupervised Text Classification:"
                    " Zero-shot and Similarity-based Approaches, NLPIR 2022",
                    license="CC BY-SA 3.0",
                    files=[path, os.path.join(root, "medical_tc_labels.csv")])


def load_splits(cfg: DataConfig) -> Splits:
    """Reads and validates the data named by ``cfg.data`` (a registered name or a path);
    with ``cfg.redact_pii`` every text has its PII replaced by typed placeholders."""
    splits = _read_splits(cfg)
    if cfg.redact_pii:
        splits.pii_redacted = collections.Counter()
        for split in SPLITS:
            for ex in splits.split(split):
                ex.text = pii.redact(ex.text, splits.pii_redacted)
        logging.info("redacted PII in %s: %s", splits.name, dict(splits.pii_redacted))
    return splits


def _read_splits(cfg: DataConfig) -> Splits:
    if cfg.data in DATASETS:
        return DATASETS.get(cfg.data)(cfg)
    if not os.path.exists(cfg.data):
        raise DataError(f"{cfg.data}: not a file, folder or registered dataset "
                        f"({', '.join(DATASETS.names())}). Fix: check --data.")
    read = lambda p: read_labelled(p, cfg.text_column, cfg.label_column, cfg.data_format,
                                   cfg.on_bad_row)
    files = [p for p in (cfg.data, cfg.validation_data, cfg.test_data) if p]
    name = os.path.splitext(os.path.basename(os.path.normpath(cfg.data)))[0]
    return assemble(name, read(cfg.data), read(cfg.validation_data) if cfg.validation_data
                    else None, read(cfg.test_data) if cfg.test_data else None, cfg, files=files)


def require_splits(splits: Splits, cfg: DataConfig, names=SPLITS) -> None:
    """A DataError naming the fix when one of ``names`` is empty (found before any training:
    an empty validation or test split would otherwise fail only once training has ended)."""
    for name in names:
        if splits.split(name):
            continue
        if name == "train":
            raise DataError(f"{cfg.data}: the train split is empty. Fix: check --data.")
        fraction = getattr(cfg, f"{name}_fraction")
        why = (f"--{name}_fraction={fraction:g} holds out nothing" if fraction <= 0 else
               f"no class has the 3 examples needed to hold one out at --{name}_fraction="
               f"{fraction:g}")
        raise DataError(f"{cfg.data}: the {name} split is empty ({why} and there is no "
                        f"--{name}_data). Fix: give --{name}_data=<file>, or a --{name}_fraction "
                        "> 0 and enough examples per class.")


def fingerprint(cfg: DataConfig, files: List[str]) -> str:
    """A short hash of the source files' bytes and every option that changes the splits."""
    h = hashlib.sha1()
    for p in files:
        paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs) \
            if os.path.isdir(p) else [p]
        for path in paths:
            h.update(os.path.relpath(path, p).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    opts = (cfg.data_format, cfg.text_column, cfg.label_column, cfg.validation_fraction,
            cfg.test_fraction, cfg.split_seed, cfg.on_bad_row, cfg.data in DATASETS)
    if cfg.redact_pii:  # appended only when on, so earlier fingerprints stay valid
        opts += ("redact_pii",)
    if cfg.oos_validation_share:  # likewise
        opts += (("oos_validation_share", cfg.oos_validation_share),)
    h.update(repr(opts).encode())
    return h.hexdigest()[:12]
