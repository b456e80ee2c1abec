"""``PipelineConfig``: which recipes each stage uses and how the student is compressed and
exported. Mirrored 1:1 by the flags of scripts/pipeline.py."""
import dataclasses
import os

from slm_tf.config import field, fraction, non_negative, positive
from slm_tf.distill.config import KD_ALPHA, KD_TEMPERATURE, DistillConfig
from slm_tf.export.config import EXPORT_FORMATS, are_export_formats
from slm_tf.pipeline.compress_source import RULES as COMPRESS_FROM
from slm_tf.recipes import RECIPES_DIR as CONFIGS
from slm_tf.train.config import TASK_NAMES, TrainConfig


# What --task=lm changes from the defaults below (recipes without data lines, so they fit any
# corpus; configs/shakespeare_pipeline.flags adds the benchmark split).
LM_PIPELINE_DEFAULTS = {
    "teacher_recipe": os.path.join(CONFIGS, "lm_teacher.flags"),
    "student_recipe": os.path.join(CONFIGS, "lm_student.flags"),
    "compress_recipe": os.path.join(CONFIGS, "lm_compress.flags"),
    "alpha": 0.5, "augment_copies": 0, "prune": 0.5, "prune_epochs": 1, "qat_epochs": 1,
    # The recommended phone file and its float reference (int8's activations cost more bits
    # per character and its benchmark is slow; add tflite_int8 to measure it).
    "export_formats": ["tflite_dynamic", "tflite_float"],
}


# What --task=ner changes (generic tagger recipes for any CoNLL/span-JSONL data;
# configs/msra_ner_pipeline.flags and wnut_ner_pipeline.flags are the tuned ones).
NER_PIPELINE_DEFAULTS = {
    "teacher_recipe": os.path.join(CONFIGS, "ner_teacher.flags"),
    "student_recipe": os.path.join(CONFIGS, "ner_student.flags"),
    "compress_recipe": os.path.join(CONFIGS, "ner_compress.flags"),
    "temperature": 1.0, "alpha": 0.5, "augment_copies": 0, "prune": 0.5, "prune_epochs": 2,
    "qat_epochs": 1, "export_formats": ["tflite_int8", "tflite_float"],
}
TASK_PIPELINE_DEFAULTS = {"lm": LM_PIPELINE_DEFAULTS, "ner": NER_PIPELINE_DEFAULTS}


@dataclasses.dataclass
class PipelineConfig:
    task: str = field(TASK_NAMES[0], "What the models learn: classification, lm (a causal "
                      "language model on a text corpus; other defaults then follow "
                      "LM_PIPELINE_DEFAULTS unless set) or ner (named entities on CoNLL or "
                      "span-JSONL data; NER_PIPELINE_DEFAULTS).",
                      choices=("classification", "lm", "ner"))
    output_dir: str = field("", "Root of every stage's run directory, the report and the "
                            "TensorBoard logs.", validate=bool, rule="set")
    teacher_recipe: str = field(os.path.join(CONFIGS, "banking77_teacher.flags"),
                                "Flagfile of the teacher's training run. Not given "
                                "(classification): the teacher follows the data - a frozen "
                                "pretrained encoder for few English documents, else this "
                                "recipe with the sequence length of the data.")
    teacher_dir: str = field("", "Use this finished teacher run instead of training one.")
    student_recipe: str = field(os.path.join(CONFIGS, "banking77_student.flags"),
                                "Flagfile of the student (trained plain and distilled).")
    student_max_bytes: int = field(1_000_000, "Size budget of the automatic student's int8 "
                                   "file (no --student_recipe): its vocabulary and widths are "
                                   "chosen to fit; 0 = no budget.", validate=non_negative,
                                   rule=">= 0")
    temperature: float = field(KD_TEMPERATURE, "KD temperature.", validate=positive, rule="> 0")
    alpha: float = field(KD_ALPHA, "KD weight of the hard-label term.",
                         validate=lambda x: 0.0 <= x <= 1.0, rule="in [0, 1]")
    augment_copies: int = field(2, "Augmented copies of each training text the teacher labels.",
                                validate=non_negative, rule=">= 0")
    cache_top_k: int = field(DistillConfig.cache_top_k, "Token-level distillation (LM, NER): "
                             "distill.py's --cache_top_k for the distilled stage (the pruned "
                             "and QAT stages inherit it).", validate=non_negative, rule=">= 0")
    unlabeled_data: str = field("", "distill.py's --unlabeled_data for the distilled stage: "
                                "texts the teacher labels softly (a .txt file or folder, or a "
                                "registered dataset's training texts); with --pretrain also "
                                "pretrained on.")
    pretrain: bool = field(False, "Add a pretrain stage (classification, ner): masked-"
                           "language modelling of the student's architecture, tokenizer (a "
                           "tagger: the teacher's vocabulary) and data on the training texts "
                           "plus --unlabeled_data; the student and distilled stages then "
                           "start from it (--init_from).")
    pretrain_recipe: str = field(os.path.join(CONFIGS, "pretrain_student.flags"),
                                 "Flagfile of the pretrain stage's training flags (epochs, "
                                 "learning rate, schedule); its data, tokenizer and model come "
                                 "from the student's recipe.")
    compress_from: str = field("better", "Which student the pruning / QAT stages start from: "
                               "better = the distilled one unless the labels-only student is "
                               "at least as accurate on validation (classification; a tie "
                               "keeps the labels-only one); distilled = always the distilled "
                               "one.", choices=COMPRESS_FROM)
    compress_recipe: str = field(os.path.join(CONFIGS, "banking77_compress.flags"),
                                 "Flagfile of compress.py giving how the pruning and QAT stages "
                                 "fine-tune (learning rates, schedule, KD weight, seed); the "
                                 "sparsity and epochs come from the flags below.")
    prune: float = field(0.8, "Target sparsity of the pruning stage (0 skips the stage; an "
                         "automatic student is not pruned unless this is given).",
                         validate=fraction, rule="in [0, 1)")
    prune_epochs: int = field(15, "Fine-tuning epochs while pruning.", validate=positive,
                              rule="> 0")
    compress_steps_per_epoch: int = field(0, "Cap each pruning/QAT epoch at this many steps "
                                          "(0 = whole epochs; a short LM pipeline).",
                                          validate=non_negative, rule=">= 0")
    qat: bool = field(True, "Run the quantization-aware training stage (sparsity-preserving "
                      "after pruning).")
    qat_epochs: int = field(3, "Epochs of quantization-aware training.", validate=positive,
                            rule="> 0")
    export_formats: list = field(["tflite_int8", "tflite_dynamic", "tflite_float", "onnx"],
                                 "Formats the final student is exported to and benchmarked in "
                                 f"(of {', '.join(EXPORT_FORMATS)}; empty = no export "
                                 "stages).",
                                 validate=lambda v: not v or are_export_formats(v),
                                 rule=f"a list of {', '.join(EXPORT_FORMATS)}")
    latency_queries: int = field(300, "Batch-1 queries timed per exported file.",
                                 validate=positive, rule="> 0")
    max_stage_drop: float = field(0.01, "Accuracy (0.01 = 1 point) the recommended file may "
                                  "lose to an earlier student stage before the report and the "
                                  "terminal warn and name the stage and knob to fix.",
                                  validate=fraction, rule="in [0, 1)")
    seed: int = field(TrainConfig.seed, "Seed of every training stage (teacher, student, "
                      "distillation, pruning, QAT) when given; not given, each recipe keeps "
                      "its own --seed. Rerun with other seeds to see the spread of a result.",
                      validate=non_negative, rule=">= 0")
    teacher_latency_queries: int = field(100, "Batch-1 queries timed for the teacher's float "
                                         "TFLite file (the speed-up reference).",
                                         validate=positive, rule="> 0")
