"""The pipeline's stages, in order. Each writes one directory under the output root; a stage
whose outputs are complete is skipped, and an interrupted one resumes from its own checkpoints
(training and distillation restore their last epoch), so a rerun after a crash redoes nothing
that finished."""
import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional, Set

from absl import logging

from slm_tf.autorecipe import (Choice, apply, choice_records, choose, choose_compression,
                               configure, log_choices, pretrained_available, profile_split,
                               save_profile)
from slm_tf.config import from_dict, parse_flagfile, parse_recipe
from slm_tf.data.config import DataConfig
from slm_tf.distill.augment import AugmentConfig
from slm_tf.distill.run import DistillConfig, DistillExperiment, distill
from slm_tf.errors import UserError
from slm_tf.export.benchmark import RESULT_FILE, benchmark_export
from slm_tf.export.run import ExportConfig, export_run
from slm_tf.io_utils import read_json
from slm_tf.models import MODELS, ModelConfig
from slm_tf.models.embedding_init import TEACHER
from slm_tf.peft.config import OBJECTIVE_DEFAULTS, FineTuneConfig, PretrainConfig
from slm_tf.pipeline.compress_source import compress_source
from slm_tf.pipeline.config import PipelineConfig
from slm_tf.tokenizers import TokenizerConfig
from slm_tf.tokenizers.base import VOCAB_FILE
from slm_tf.trust.config import DPConfig
from slm_tf.train.artifacts import CONFIG_FILE, METRICS_FILE, TOKENIZER_DIR, is_complete
from slm_tf.train.trainer import ExperimentConfig, TrainConfig, train

TRAIN_CLASSES = (DataConfig, TokenizerConfig, ModelConfig, TrainConfig)
# A teacher recipe may also set DP and fine-tuning flags (e.g. --frozen_encoder).
TEACHER_CLASSES = (*TRAIN_CLASSES, DPConfig, FineTuneConfig)


@dataclasses.dataclass
class Context:
    """What every stage sees: the config, the data flags the user gave (they override both
    recipes, so one command works on any dataset) and the output root."""
    cfg: PipelineConfig
    data_overrides: List[str]
    # No --student_recipe given: the student's recipe is the automatic one (slm_tf.autorecipe).
    auto_student: bool = False
    # No --teacher_recipe given: the teacher follows the data too (see ``teacher``).
    auto_teacher: bool = False
    data_on_command_line: Set[str] = dataclasses.field(default_factory=set)
    # Pipeline flags the user set (command line or flagfile): automatic choices leave them.
    pipeline_given: Set[str] = dataclasses.field(default_factory=set)
    # The automatic compression choices (``autorecipe.choose_compression``), set on ``cfg``.
    compression_choices: Dict[str, Choice] = dataclasses.field(init=False)
    compression_applied: Dict[str, Choice] = dataclasses.field(init=False)

    def __post_init__(self):
        if self.cfg.pretrain and self.cfg.task == "lm":
            raise UserError("--pretrain adds masked-LM pretraining of a classifier's or a "
                            "tagger's encoder; this is a --task=lm pipeline. Fix: drop "
                            "--pretrain (a causal LM is pretrained by its own objective).")
        self.compression_choices = choose_compression(
            self.auto_student and self.cfg.task == "classification")
        self.compression_applied = {k: c for k, c in self.compression_choices.items()
                                    if k not in self.pipeline_given}
        apply([self.cfg], self.compression_applied)
        log_choices(self.compression_choices, self.compression_applied)

    def path(self, stage: str) -> str:
        if stage == "teacher" and self.cfg.teacher_dir:
            return self.cfg.teacher_dir
        return os.path.join(self.cfg.output_dir, stage)

    def overrides(self, run_dir: str) -> List[str]:
        """What a stage's recipe takes from this pipeline: the data flags, ``--seed`` when
        the user gave it, and ``run_dir``."""
        return [*self.data_overrides, *self.seed_flag(), f"--output_dir={run_dir}"]

    def seed_flag(self) -> List[str]:
        """``--seed`` for every training stage when the user gave it, else nothing."""
        return [f"--seed={self.cfg.seed}"] if "seed" in self.pipeline_given else []

    def recipe(self, flagfile: str, run_dir: str, extra=()):
        """A teacher recipe's configs with this pipeline's overrides."""
        return parse_flagfile(TEACHER_CLASSES, flagfile, [*self.overrides(run_dir), *extra])

    def teacher(self, run_dir: str):
        """``(configs, data profile or None)`` of the teacher: ``--teacher_recipe``; without
        one (``auto_teacher``, classification), train.py's automatic model where that is not
        the CNN - the frozen pretrained encoder for few English documents, the unbudgeted bag
        of n-grams for long documents and Chinese text (MiniLM reads 256 word pieces of a
        1,437-piece scene, and its vocabulary is English; fine-tuning it on such data costs
        an hour of CPU) - else (short texts) the fine-tuned MiniLM recipe with the
        data-dependent choices (sequence length) from the data."""
        if not (self.auto_teacher and self.cfg.task == "classification"):
            return self.recipe(self.cfg.teacher_recipe, run_dir), None
        extra = self.overrides(run_dir)
        configs, given = parse_recipe(TEACHER_CLASSES, self.cfg.teacher_recipe, extra)
        if not configs[3].auto_recipe:
            return configs, None
        pretrained = pretrained_available()
        if choose(profile_split(configs[0]), pretrained=pretrained)["model"].value != "cnn":
            # Profiled again below: without the recipe the validation fraction may differ.
            configs, given = parse_recipe(TEACHER_CLASSES, "", extra)
        return configs, configure(configs, configs[0], given - {"output_dir"},
                                  self.data_on_command_line, pretrained=pretrained)

    def student(self, run_dir: str):
        """``(configs, data profile or None)`` of the student: its recipe (none when
        ``auto_student``) with the choices of the automatic recipe that apply, as train.py
        does - data-dependent ones unless given on the command line (or by a recipe on its own
        data), model and training ones when no model is named anywhere."""
        auto = self.auto_student and self.cfg.task == "classification"
        configs, given = parse_recipe(TRAIN_CLASSES, "" if auto else self.cfg.student_recipe,
                                      self.overrides(run_dir))
        model = configs[TRAIN_CLASSES.index(ModelConfig)]  # parsed afresh: ours to change
        if model.init_embeddings_from == TEACHER:  # both students start the same way
            model.init_embeddings_from = self.path("teacher")
        if not configs[3].auto_recipe or configs[3].task != "classification":
            return configs, None
        profile = configure(configs, configs[0], given - {"output_dir"},
                            self.data_on_command_line,
                            max_bytes=self.cfg.student_max_bytes if auto else 0)
        profile["pipeline_choices"] = choice_records(self.compression_choices,
                                                     self.compression_applied)
        return configs, profile

    def final_model_stage(self) -> str:
        """The last model-producing stage that is enabled."""
        return [s.name for s in enabled_stages(self.cfg) if s.produces_model][-1]


@dataclasses.dataclass
class Stage:
    name: str
    description: str
    run: Callable[[Context, str], None]
    produces_model: bool = True
    enabled: Callable[[PipelineConfig], bool] = lambda cfg: True

    def done(self, path: str) -> bool:
        if self.produces_model:
            return is_complete(path)
        return os.path.exists(os.path.join(path, RESULT_FILE))


def _teacher(ctx: Context, path: str) -> None:
    configs, profile = ctx.teacher(path)
    train(ExperimentConfig(*configs))
    save_profile(path, profile)


def _pretrain(ctx: Context, path: str) -> None:
    """Masked-LM pretraining of the student's recipe (data, tokenizer, model) on the training
    texts plus ``--unlabeled_data``, trained as ``--pretrain_recipe`` says. A tagger takes
    the teacher's tokenizer and vocabulary instead: its distillation reads the teacher's ids."""
    (data, tok, model, _), _ = ctx.student(path)
    if ctx.cfg.task == "ner":
        teacher = read_json(os.path.join(ctx.path("teacher"), CONFIG_FILE))["tokenizer"]
        tok = dataclasses.replace(from_dict(TokenizerConfig, teacher), vocab_file=os.path.join(
            ctx.path("teacher"), TOKENIZER_DIR, VOCAB_FILE))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    defaults = [f"--{k}={v}" for k, v in OBJECTIVE_DEFAULTS["mlm"].items() if k in fields]
    (tcfg,) = parse_flagfile((TrainConfig,), ctx.cfg.pretrain_recipe,
                             [*ctx.seed_flag(), f"--output_dir={path}"], defaults)
    train(ExperimentConfig(data, tok, model, tcfg,
                           pretrain=PretrainConfig(unlabeled_data=ctx.cfg.unlabeled_data)))


def _start(ctx: Context, model: ModelConfig) -> FineTuneConfig:
    """Where a student stage starts: the pretrain stage's weights and tokenizer when it is
    enabled (they replace the recipe's embedding initialisation), else its recipe's start."""
    if not ctx.cfg.pretrain:
        return FineTuneConfig()
    model.init_embeddings_from = ""
    return FineTuneConfig(init_from=ctx.path("pretrain"))


def _student(ctx: Context, path: str) -> None:
    (data, tok, model, tcfg), profile = ctx.student(path)
    train(ExperimentConfig(data, tok, model, tcfg, finetune=_start(ctx, model)))
    save_profile(path, profile)


def _distilled(ctx: Context, path: str) -> None:
    (data, tok, model, tcfg), profile = ctx.student(path)
    kd = DistillConfig(teacher_dir=ctx.path("teacher"), temperature=ctx.cfg.temperature,
                       alpha=ctx.cfg.alpha, cache_top_k=ctx.cfg.cache_top_k,
                       unlabeled_data=ctx.cfg.unlabeled_data)
    # A language model's transfer set is its corpus (text augmentation is for classifiers).
    copies = ctx.cfg.augment_copies if ctx.cfg.task == "classification" else 0
    teacher_model = read_json(os.path.join(ctx.path("teacher"), CONFIG_FILE))["model"]["model"]
    if copies and not MODELS.get(teacher_model).word_embeddings:
        logging.info("distillation: no augmented copies (the %s teacher has no word embeddings "
                     "to draw neighbour words from)", teacher_model)
        copies = 0
    distill(DistillExperiment(data, tok, model, tcfg, kd, AugmentConfig(augment_copies=copies),
                              _start(ctx, model)))
    save_profile(path, profile)


def _previous_model(ctx: Context, stage: str) -> str:
    names = [s.name for s in enabled_stages(ctx.cfg) if s.produces_model]
    previous = names[names.index(stage) - 1]
    if previous == "distilled":
        previous, reason = compress_source(
            *(read_json(os.path.join(ctx.path(s), METRICS_FILE)) for s in ("student", previous)),
            ctx.cfg.compress_from, ctx.cfg.task)
        logging.info("%s starts from the %s model (%s)", stage, previous, reason)
    return ctx.path(previous)


def _compress(ctx: Context, stage: str, path: str, overrides, qat_stage: bool = False) -> None:
    """compress.py on the previous stage's run with the compress recipe plus ``overrides``."""
    from slm_tf.compress.run import compress_recipe
    compress_recipe(ctx.cfg.compress_recipe, _previous_model(ctx, stage), path,
                    [f"--teacher_dir={ctx.path('teacher')}", "--cluster=0", *ctx.seed_flag(),
                     f"--steps_per_epoch={ctx.cfg.compress_steps_per_epoch}", *overrides],
                    qat_stage)


def _pruned(ctx: Context, path: str) -> None:
    _compress(ctx, "pruned", path, [f"--prune={ctx.cfg.prune}", "--noqat",
                                    f"--epochs={ctx.cfg.prune_epochs}"])


def _qat(ctx: Context, path: str) -> None:
    # QAT alone keeps a pruned source's zeros (--keep_sparsity).
    _compress(ctx, "qat", path, [f"--qat_epochs={ctx.cfg.qat_epochs}"], qat_stage=True)


def _export(ctx: Context, path: str) -> None:
    export_run(ExportConfig(run_dir=ctx.path(ctx.final_model_stage()),
                            formats=list(ctx.cfg.export_formats), output_dir=path))
    benchmark_export(path, ctx.cfg.latency_queries)


def _teacher_export(ctx: Context, path: str) -> None:
    export_run(ExportConfig(run_dir=ctx.path("teacher"), formats=["tflite_float"],
                            output_dir=path))
    benchmark_export(path, ctx.cfg.teacher_latency_queries)


STAGES = [
    Stage("teacher", "train (or reuse) the teacher", _teacher),
    Stage("pretrain", "masked-LM pretraining of the student on the training and unlabeled "
          "texts", _pretrain, enabled=lambda cfg: cfg.pretrain),
    Stage("student", "train the student on hard labels (the no-KD reference)", _student),
    Stage("distilled", "distill the teacher into the student", _distilled),
    Stage("pruned", "prune the distilled student while the teacher keeps teaching", _pruned,
          enabled=lambda cfg: cfg.prune > 0),
    Stage("qat", "quantization-aware training (sparsity preserved)", _qat,
          enabled=lambda cfg: cfg.qat),
    Stage("export", "export the final student and benchmark every file", _export,
          produces_model=False, enabled=lambda cfg: bool(cfg.export_formats)),
    Stage("teacher_export", "export and benchmark the teacher (the speed-up reference)",
          _teacher_export, produces_model=False, enabled=lambda cfg: bool(cfg.export_formats)),
]


def enabled_stages(cfg: PipelineConfig) -> List[Stage]:
    return [s for s in STAGES if s.enabled(cfg)]


def run_stages(ctx: Context, only: Optional[List[str]] = None) -> Dict[str, Dict]:
    """Runs every enabled stage in order, skipping complete ones; returns what happened."""
    stages = enabled_stages(ctx.cfg)
    status = {}
    for i, stage in enumerate(stages, 1):
        path = ctx.path(stage.name)
        if stage.done(path):
            logging.info("[stage %d/%d] %s: complete in %s, skipped", i, len(stages),
                         stage.name, path)
            status[stage.name] = {"path": path, "ran": False}
            continue
        logging.info("[stage %d/%d] %s: %s -> %s", i, len(stages), stage.name,
                     stage.description, path)
        start = time.time()
        stage.run(ctx, path)
        status[stage.name] = {"path": path, "ran": True, "seconds": round(time.time() - start)}
    return status


def run_and_report(ctx: Context, command: str) -> Dict:
    """Runs the enabled stages (complete ones are skipped) and writes the report; returns its
    summary (``summary.json``; the LM report's for ``--task=lm``)."""
    from slm_tf.pipeline import ner_report  # noqa: F401  (registers the NER report)
    from slm_tf.pipeline.report import write_report
    status = run_stages(ctx)
    paths = {s.name: ctx.path(s.name) for s in enabled_stages(ctx.cfg)}
    if ctx.cfg.task == "lm":
        from slm_tf.pipeline.lm_report import write_lm_report
        return write_lm_report(paths, ctx.final_model_stage(), ctx.cfg.output_dir, command,
                               status)
    return write_report(paths, ctx.final_model_stage(), ctx.cfg.output_dir, command, status,
                        ctx.cfg.max_stage_drop, task=ctx.cfg.task)
