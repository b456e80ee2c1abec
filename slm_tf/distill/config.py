"""``DistillConfig`` and ``AugmentConfig``: how a student learns from its teacher and how the
transfer set is augmented. TensorFlow-free, so scripts define and check their flags before
TensorFlow loads."""
import dataclasses

from slm_tf.config import field, fraction, non_negative, positive

# The KD defaults, defined once: DistillConfig, the Distiller, compress.py's fallback and the
# pipeline all use these (tests/test_one_source.py fails if one drifts).
KD_TEMPERATURE = 4.0
KD_ALPHA = 0.5
# Token-level caches: a float16 distribution per position costs 2 * V bytes (178 bytes for a
# character vocabulary of 89); above this vocabulary the cache keeps the top-k logits only.
FULL_CACHE_MAX_VOCAB = 512
TOP_K_FALLBACK = 64


@dataclasses.dataclass
class DistillConfig:
    teacher_dir: str = field("", "Run directory of the fine-tuned teacher (train.py output).",
                             validate=bool, rule="set (e.g. --teacher_dir=runs/teacher)")
    temperature: float = field(KD_TEMPERATURE, "Softmax temperature T of the soft targets.",
                               validate=positive, rule="> 0")
    alpha: float = field(KD_ALPHA, "Weight of the hard-label cross-entropy; 1 - alpha weighs the "
                         "T^2-scaled KL term.", validate=lambda a: 0.0 <= a <= 1.0,
                         rule="in [0, 1]")
    temperature_schedule: str = field("constant", "constant, or linear: anneal T to 1 over "
                                      "the epochs.", choices=("constant", "linear"))
    cache_teacher: bool = field(True, "Compute the teacher's outputs once and cache them as "
                                "TFRecords under --data_dir (else run the teacher online).")
    unlabeled_data: str = field("", "Unlabeled text added to the transfer set, which the "
                                "teacher labels softly: a .txt file or folder, or a registered "
                                "dataset whose training texts are used (e.g. banking77's "
                                "queries as out-of-scope-like examples for clinc150_oos).")
    unlabeled_unit: str = field("line", "One unlabeled document per line or per paragraph.",
                                choices=("line", "paragraph"))
    feature_weight: float = field(0.0, "Weight of the intermediate term: MSE between the "
                                  "teacher's pooled sentence vector and a learned projection "
                                  "of the student's (0 = off).", validate=lambda x: x >= 0,
                                  rule=">= 0")
    cache_top_k: int = field(0, "Token-level tasks (LMs): cache only the teacher's k most "
                             "likely classes per position and the mass outside them as one "
                             "more class (0 = the full distribution as float16 when the vocabulary has at most "
                             f"{FULL_CACHE_MAX_VOCAB} tokens, else the top {TOP_K_FALLBACK}).",
                             validate=non_negative, rule=">= 0")
    max_unlabeled: int = field(50000, "Use at most this many unlabeled documents.",
                               validate=non_negative, rule=">= 0")


@dataclasses.dataclass
class AugmentConfig:
    augment_copies: int = field(0, "Augmented copies of each training text added to the "
                                "transfer set (labelled softly by the teacher; 0 = none).",
                                validate=non_negative, rule=">= 0")
    p_mask: float = field(0.1, "Per-word probability of masking (augmentation).",
                          validate=fraction, rule="in [0, 1)")
    p_neighbour: float = field(0.1, "Per-word probability of replacing the word by a "
                               "nearest neighbour in the teacher's embedding space.",
                               validate=fraction, rule="in [0, 1)")
    p_ngram: float = field(0.25, "Per-copy probability of keeping only a random n-gram "
                           "(n in 1..5) of the augmented text.", validate=fraction,
                           rule="in [0, 1)")
    augment_seed: int = field(0, "Seed of the augmentation draws.")
