"""DataConfig: where the data comes from and how it is split and batched (mirrored by flags)."""
import dataclasses
import os

from slm_tf.config import field, fraction, positive
from slm_tf.data.readers import BAD_ROW_POLICIES, FORMATS, DataError

SPLITS = ("train", "validation", "test")
ALL = "all"  # every example of the source, whatever split it is in
# evaluate.py's --split choices (TensorFlow-free, so its flags parse before TF loads).
AUTO = "auto"  # the run's test split when --data is its training data, else the whole file
EVAL_SPLITS = (AUTO, ALL) + SPLITS
DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "slm_tf", "tfds")


@dataclasses.dataclass
class DataConfig:
    data: str = field("banking77", "A registered dataset name (banking77, clinc150, "
                      "medical_abstracts) or a path to a CSV/TSV/JSONL file or a folder of "
                      "<label>/*.txt files.")
    data_root: str = field("", "Folder holding the registered datasets that are not embedded "
                           "(clinc150/, medical_abstracts/).")
    data_dir: str = field(DEFAULT_DATA_DIR, "Where tensorflow-datasets writes prepared TFRecords.")
    data_format: str = field("auto", "Format of --data when it is a path.", choices=FORMATS)
    text_column: str = field("text", "Column (or JSON key) holding the text.")
    label_column: str = field("label", "Column (or JSON key) holding the label.")
    validation_data: str = field("", "Optional separate validation file (same format/columns).")
    test_data: str = field("", "Optional separate test file (same format/columns).")
    validation_fraction: float = field(0.1, "Share of the training file held out for "
                                       "validation when no validation split exists.",
                                       validate=fraction, rule="in [0, 1)")
    test_fraction: float = field(0.1, "Share held out for test when the data has no test split.",
                                 validate=fraction, rule="in [0, 1)")
    split_seed: int = field(1234, "Seed of the deterministic stratified split.")
    oos_validation_share: float = field(
        0.0, "Share of the training split's out-of-scope examples (label 'oos', e.g. "
        "clinc150_oos's oos_train) moved into validation, where abstention thresholds are "
        "chosen: more out-of-scope validation queries (clinc150 has only 100 in oos_val); "
        "the model trains on the rest. 0 = none moved.",
        validate=fraction, rule="in [0, 1)")
    on_bad_row: str = field("error", "What to do with a bad row: stop with an error naming the "
                            "file and line, or skip it and count it.", choices=BAD_ROW_POLICIES)
    redact_pii: bool = field(False, "Replace e-mail addresses, phone numbers, card numbers, "
                             "IBANs, Chinese resident IDs, US SSNs, IP addresses and URLs by "
                             "typed placeholders ([EMAIL] ...) when the texts are read; counts "
                             "per type go to metrics.json (slm_tf.trust.pii).")
    max_seq_len: int = field(64, "Token ids per example (padded/truncated).", validate=positive,
                             rule="> 0")
    batch_size: int = field(64, "Examples per training batch.", validate=positive, rule="> 0")
    bucket_by_length: bool = field(False, "Batch examples of similar length together and pad "
                                   "each batch only to its longest member (training only).")
    token_dropout: float = field(0.0, "Training only: replace each token by [UNK] with this "
                                 "probability (word dropout, a regularizer).",
                                 validate=fraction, rule="in [0, 1)")
    shuffle_buffer: int = field(20000, "Shuffle buffer size (examples).", validate=positive,
                                rule="> 0")


def check_paths(cfg: DataConfig, split_names: bool = False) -> None:
    """Fails fast (before TensorFlow loads) on a data path that does not exist: ``--data`` when it
    is spelled as a path (a folder separator or a file extension; registered names have
    neither) and ``--validation_data`` / ``--test_data`` when set (unless ``split_names``
    allows them to name documents of ``--data``: a value without a folder separator)."""
    looks_like_path = os.sep in cfg.data or os.path.splitext(cfg.data)[1] != ""
    for flag, path in (("data", cfg.data if looks_like_path else ""),
                       ("validation_data", cfg.validation_data), ("test_data", cfg.test_data)):
        if split_names and flag != "data" and os.sep not in path:
            continue
        if path and not os.path.exists(path):
            raise DataError(f"{path}: no such file or folder. Fix: check --{flag} (a path "
                            f"relative to {os.getcwd()}, or a registered name such as "
                            "banking77).")
