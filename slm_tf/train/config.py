"""``TrainConfig``: how a run trains and where it goes. TensorFlow-free, so scripts define and
check their flags before TensorFlow loads."""
import dataclasses
from typing import Dict

from slm_tf.config import field, fraction, non_negative, positive, to_dict
from slm_tf.data.config import DataConfig
from slm_tf.models.config import ModelConfig
from slm_tf.peft.config import FineTuneConfig, PretrainConfig
from slm_tf.tokenizers.config import TokenizerConfig
from slm_tf.trust.config import DPConfig
from slm_tf.trust.targets import (ABSTAIN_METHOD_HELP, ABSTAIN_METHODS, ABSTAIN_TARGET_HELP,
                                  ABSTAIN_TARGET_RULE, DEFAULT_ABSTAIN_METHOD,
                                  DEFAULT_ABSTAIN_TARGET, valid_target)

# The registered tasks (slm_tf.tasks.TASKS), the default first; listed here because the registry
# loads TensorFlow. slm_tf.tasks checks at import that both agree.
TASK_NAMES = ("classification", "ner", "lm", "mlm")
# The tf.distribute strategies (slm_tf.train.strategies.STRATEGIES), listed here for the same
# reason; the registry refuses a name missing here and checks all are registered.
STRATEGY_NAMES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass
class TrainConfig:
    output_dir: str = field("", "Run directory for the model, tokenizer, config, metrics, "
                            "TensorBoard logs and checkpoints.", validate=bool,
                            rule="set (e.g. --output_dir=runs/x)")
    epochs: int = field(10, "Maximum training epochs.", validate=positive, rule="> 0")
    learning_rate: float = field(2e-3, "Peak learning rate of AdamW.", validate=positive,
                                 rule="> 0")
    weight_decay: float = field(0.01, "AdamW decoupled weight decay.", validate=non_negative,
                                rule=">= 0")
    warmup_fraction: float = field(0.1, "Share of steps spent warming the learning rate up.",
                                   validate=fraction, rule="in [0, 1)")
    decay: str = field("linear", "Learning-rate decay after warmup.",
                       choices=("linear", "cosine", "constant"))
    clip_norm: float = field(1.0, "Clip gradients to this L2 norm (0 = no clipping).",
                             validate=non_negative, rule=">= 0")
    clip_global: bool = field(False, "Clip the norm of all gradients together (scaling them "
                              "alike, as GPT recipes do) instead of each variable's gradient on "
                              "its own; per variable distorts the update's direction.")
    label_smoothing: float = field(0.0, "Label smoothing of the cross-entropy.",
                                   validate=fraction, rule="in [0, 1)")
    train_minutes: float = field(0.0, "Wall-clock training budget in minutes (0 = none): "
                                 "training stops when it is spent and the learning rate decays "
                                 "over it (the schedule follows whichever of steps or time is "
                                 "further on), so a budgeted recipe ends annealed on any "
                                 "machine; --epochs is then an upper bound.",
                                 validate=non_negative, rule=">= 0")
    early_stopping_patience: int = field(3, "Stop after this many epochs without a better "
                                         "validation accuracy (0 = never).",
                                         validate=non_negative, rule=">= 0")
    seed: int = field(42, "Seed of weights, dropout and shuffling (same seed, same metrics).")
    strategy: str = field("default", "tf.distribute strategy.", choices=STRATEGY_NAMES)
    checkpoint_every_steps: int = field(0, "Also checkpoint every N training steps, so a crash "
                                        "mid-epoch loses at most N steps (0 = each epoch only).",
                                        validate=non_negative, rule=">= 0")
    deterministic: bool = field(True, "Use deterministic TF kernels (reproducible metrics).")
    jit_compile: bool = field(False, "Compile the training and evaluation steps with XLA: "
                              "faster on a CPU for small, overhead-bound models (the one-hour "
                              "Shakespeare recipe uses it); results match the uncompiled step "
                              "within float rounding.")
    overwrite: bool = field(False, "Retrain into an --output_dir that holds a complete run: its "
                            "model, metrics, export/, eval/, logs/ and checkpoints/ are removed "
                            "first. Without it a complete run is refused (an incomplete one "
                            "always resumes).")
    auto_recipe: bool = field(True, "Profile the training split and choose what the user did "
                              "not set: tokenizer, vocabulary size, sequence length and class "
                              "weights always (unless given on the command line); the model "
                              "and its training hyper-parameters when no --model is given. "
                              "Choices and reasons go to data_profile.json (train.py).")
    class_weights: str = field("none", "Weight the loss by inverse class frequency (balanced) "
                               "for imbalanced data.", choices=("none", "balanced"))
    baseline: bool = field(True, "Also fit the task's classical baseline (classification: "
                           "TF-IDF + linear SVM, scikit-learn, seconds) on the same splits, store "
                           "it in metrics.json and warn when the model scores below it.")
    task: str = field(TASK_NAMES[0], "What the model learns: classification (one label per "
                      "text), or another registered task.", choices=TASK_NAMES)
    calibrate: bool = field(True, "Fit temperature scaling on the validation split; "
                            "metrics.json reports ECE before/after and exported models output "
                            "the calibrated probabilities.")
    abstain_method: str = field(DEFAULT_ABSTAIN_METHOD, ABSTAIN_METHOD_HELP,
                                choices=ABSTAIN_METHODS)
    abstain_target: str = field(DEFAULT_ABSTAIN_TARGET, ABSTAIN_TARGET_HELP,
                                validate=valid_target, rule=ABSTAIN_TARGET_RULE)


@dataclasses.dataclass
class ExperimentConfig:
    """Everything one training run needs; ``config.json`` is this, serialized."""
    data: DataConfig
    tokenizer: TokenizerConfig
    model: ModelConfig
    train: TrainConfig
    dp: DPConfig = dataclasses.field(default_factory=DPConfig)
    finetune: FineTuneConfig = dataclasses.field(default_factory=FineTuneConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)

    def to_dict(self) -> Dict:
        return {k: to_dict(getattr(self, k)) for k in ("data", "tokenizer", "model", "train",
                                                       "dp", "finetune", "pretrain")}
