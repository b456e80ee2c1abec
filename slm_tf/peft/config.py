"""``FineTuneConfig``: where a run starts (``--init_from``), how many labels it sees
(``--train_examples_per_class``) and which weights it trains (LoRA, BitFit, frozen layers).
TensorFlow-free, so scripts define and check their flags before TensorFlow loads."""
import dataclasses

from slm_tf.config import field, non_negative
from slm_tf.distill.config import DistillConfig
from slm_tf.errors import UserError

# Projections LoRA can adapt: the attention's four Dense sublayers and the feed-forward pair
# (``slm_tf.peft.lora.TARGETS`` maps each to the layers of bert and transformer models).
LORA_TARGETS = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


def _targets_ok(targets) -> bool:
    return bool(targets) and all(t in LORA_TARGETS for t in targets)


@dataclasses.dataclass
class FineTuneConfig:
    init_from: str = field("", "A run directory (e.g. from scripts/pretrain.py) whose encoder "
                           "weights start this run; its tokenizer is carried over. Every "
                           "tensor of the same name must match in shape.")
    train_examples_per_class: int = field(0, "Few-shot: keep K seeded training examples per "
                                          "class (0 = all); the other training texts are "
                                          "written to unlabeled_train.txt in the run.",
                                          validate=non_negative, rule=">= 0")
    lora_rank: int = field(0, "LoRA rank r on the --lora_targets Dense kernels (0 = off). The "
                           "base weights are frozen; the adapters, the classifier head (and "
                           "biases with --bitfit) train. The adapter is saved alone as "
                           "adapter.safetensors and merged into model.keras.",
                           validate=non_negative, rule=">= 0")
    lora_alpha: float = field(16.0, "LoRA scale numerator: the update is (alpha / r) * A @ B.",
                              validate=lambda x: x is not None and x > 0, rule="> 0")
    lora_dropout: float = field(0.0, "Dropout on the input of the LoRA branch while training.",
                                validate=lambda x: x is not None and 0.0 <= x < 1.0,
                                rule="in [0, 1)")
    lora_targets: list = field(["query", "value"], "Projections LoRA adapts, from "
                               f"{', '.join(LORA_TARGETS)}.", validate=_targets_ok,
                               rule=f"a non-empty list from {', '.join(LORA_TARGETS)}")
    bitfit: bool = field(False, "Train only biases (plus the head and any LoRA adapters); "
                         "every other weight is frozen.")
    freeze_layers: int = field(0, "Freeze the embeddings and the first N encoder blocks "
                               "(bert, transformer).", validate=non_negative, rule=">= 0")
    frozen_encoder: bool = field(False, "Keep the whole encoder (embeddings, every block, "
                                 "pooling) frozen and train only the classifier head on its "
                                 "pooled outputs, computed once per text and cached under "
                                 "--data_dir/encoder_cache/ (keyed by the encoder's weights), so "
                                 "epochs, reruns and the distillation teacher cache reuse them. "
                                 "The saved model is the whole classifier (bert).")

    @property
    def peft(self) -> bool:
        """True when only part of the weights train."""
        return self.lora_rank > 0 or self.bitfit or self.freeze_layers > 0


def check(cfg: FineTuneConfig, model_name: str) -> None:
    """Refuses LoRA/layer freezing on an architecture without the encoder blocks it addresses."""
    if cfg.frozen_encoder and (cfg.peft or model_name != "bert"):
        raise UserError(f"--frozen_encoder trains only the head of a pretrained bert encoder "
                        f"(here --model={model_name}"
                        f"{', with LoRA/BitFit/--freeze_layers' if cfg.peft else ''}). Fix: use "
                        "--model=bert --init_checkpoint=... and drop --lora_rank, --bitfit and "
                        "--freeze_layers (the whole encoder is frozen already).")
    if (cfg.lora_rank or cfg.freeze_layers) and model_name not in ("bert", "transformer"):
        raise UserError(f"--lora_rank/--freeze_layers address the attention and feed-forward "
                        f"blocks of bert and transformer models, not --model={model_name}. "
                        "Fix: use --model=bert or transformer, or --bitfit alone.")


# What each objective changes from train.py's defaults (flags the user gives win): the task,
# and no classifier extras (baseline, calibration, abstention) for a model without classes.
OBJECTIVE_DEFAULTS = {
    "mlm": {"task": "mlm", "model": "transformer", "baseline": False, "calibrate": False,
            "abstain_method": "none", "learning_rate": 1e-3, "early_stopping_patience": 0},
    "clm": {"task": "lm", "model": "gpt", "tokenizer": "char_exact", "vocab_size": 1000,
            "min_frequency": 1, "max_seq_len": 128, "dropout": 0.0, "baseline": False},
}


@dataclasses.dataclass
class PretrainConfig:
    objective: str = field("mlm", "mlm: masked-language modelling of an encoder (transformer, "
                           "bert, bilstm, bigru, cnn); clm: next-token prediction of a decoder "
                           "(gpt, lstm_lm, gru_lm; the lm task of train_lm.py).",
                           choices=("mlm", "clm"))
    # The same three flags as distill.py's, with the same defaults (one reader: data/unlabeled).
    unlabeled_data: str = field("", "mlm: unlabeled text pretrained on besides --data's "
                                "training texts: a .txt file or folder, or a registered "
                                "dataset whose training texts are used.")
    unlabeled_unit: str = field(DistillConfig.unlabeled_unit, "One unlabeled document per "
                                "line or per paragraph.", choices=("line", "paragraph"))
    max_unlabeled: int = field(DistillConfig.max_unlabeled, "Use at most this many unlabeled "
                               "documents.", validate=non_negative, rule=">= 0")
