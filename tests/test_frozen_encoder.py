"""--frozen_encoder (slm_tf.peft.frozen_encoder): the head on cached encoder outputs computes
the whole model's logits, the cache encodes each text once (counted by the encoder calls it
makes, across processes via its file), training leaves the encoder untouched, and the
distillation teacher pass reads the cache instead of encoding the training texts again."""
import os

import numpy as np
import pytest
import tensorflow as tf

from slm_tf.errors import UserError
from slm_tf.models import ModelConfig, build_model
from slm_tf.peft import frozen_encoder
from slm_tf.peft.config import FineTuneConfig, check

SEQ = 10


def _bert(pooling="mean_unit", seed=0, vocab_size=40):
    tf.keras.utils.set_random_seed(seed)
    cfg = ModelConfig(model="bert", hidden_dim=16, num_heads=2, ff_dim=32, num_layers=1,
                      dropout=0.0, pooling=pooling)
    return build_model(cfg, vocab_size, 4, SEQ)


def _ids(n, seed=1):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, 40, (n, SEQ)).astype("int32")
    for i in range(n):  # ragged padding, as real texts have
        ids[i, rng.randint(2, SEQ):] = 0
    return ids


@pytest.mark.parametrize("pooling", ["mean", "mean_unit"])
def test_head_on_encoder_outputs_equals_the_whole_model(pooling):
    model = _bert(pooling)
    encoder, head = frozen_encoder.split(model)
    ids = _ids(7)
    np.testing.assert_allclose(head(encoder(ids)).numpy(), model(ids).numpy(), atol=1e-5)
    # The head shares the model's layers: changing it changes the model.
    head.get_layer("logits").kernel.assign_add(tf.ones_like(head.get_layer("logits").kernel))
    np.testing.assert_allclose(head(encoder(ids)).numpy(), model(ids).numpy(), atol=1e-5)


def test_mean_unit_pooling_is_the_unit_length_mean_of_real_tokens():
    model = _bert("mean_unit")
    ids = _ids(5)
    tokens = tf.keras.Model(model.inputs, model.get_layer("layer0_output_norm").output)(ids)
    states, real = tokens.numpy(), (ids != 0)
    mean = np.stack([states[i][real[i]].mean(0) for i in range(len(ids))])  # by hand
    pooled = frozen_encoder.split(model)[0](ids).numpy()
    np.testing.assert_allclose(pooled, mean / np.linalg.norm(mean, axis=1, keepdims=True),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)


def test_cache_encodes_each_new_text_once_and_survives_a_new_process(tmp_path):
    encoder, _ = frozen_encoder.split(_bert())
    calls = []

    def encode(ids):
        calls.append(len(ids))
        return encoder(ids).numpy()

    path = str(tmp_path / "cache")
    first = _ids(6)
    batch = np.concatenate([first, first[:2]])  # two texts twice
    cache = frozen_encoder.EncoderCache(path, encode)
    out = cache.features(batch)
    assert calls == [6] and (cache.computed, cache.reused) == (6, 2)
    np.testing.assert_allclose(out, encoder(batch).numpy(), atol=1e-6)
    more = np.concatenate([first[3:], _ids(3, seed=9)])  # 3 known, 3 new
    np.testing.assert_allclose(cache.features(more), encoder(more).numpy(), atol=1e-6)
    assert calls == [6, 3]
    again = frozen_encoder.EncoderCache(path, encode)  # a new process reads the files
    assert len(again) == 9
    assert sorted(os.listdir(path)) == ["part-00000.npz", "part-00001.npz"]  # new rows only
    np.testing.assert_allclose(again.features(more), encoder(more).numpy(), atol=1e-6)
    assert calls == [6, 3] and again.computed == 0


def test_cached_outputs_are_the_logits_and_the_distillation_features(tmp_path):
    from slm_tf.distill.distiller import with_features
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    texts = ["play some jazz", "where is my card", "play some jazz", "book a table for two"]
    tok = build_tokenizer(TokenizerConfig(min_frequency=1), texts)
    model = _bert(vocab_size=tok.vocab_size)
    logits, pooled = frozen_encoder.cached_outputs(model, tok, texts, SEQ, str(tmp_path))
    # The oracle: the distiller's own view of the teacher run whole (logits, pooled features).
    want_logits, want_features = with_features(model)(tok.encode(texts, SEQ))
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled, want_features.numpy(), atol=1e-5)


def test_the_cache_key_follows_the_encoder_weights_not_the_head():
    model = _bert()
    encoder, head = frozen_encoder.split(model)
    key = frozen_encoder.encoder_digest(encoder)
    head.get_layer("logits").bias.assign_add(tf.ones_like(head.get_layer("logits").bias))
    assert frozen_encoder.encoder_digest(encoder) == key
    model.get_layer("word_embeddings").embeddings[0, 0].assign(5.0)
    assert frozen_encoder.encoder_digest(encoder) != key


def test_frozen_encoder_is_refused_where_it_cannot_apply():
    with pytest.raises(UserError, match="--frozen_encoder trains only the head.*--model=cnn"):
        check(FineTuneConfig(frozen_encoder=True), "cnn")
    with pytest.raises(UserError, match="drop --lora_rank"):
        check(FineTuneConfig(frozen_encoder=True, lora_rank=2), "bert")
    import tf_keras as keras
    ids = keras.Input((SEQ,), dtype="int32")
    plain = keras.Model(ids, keras.layers.Dense(3, name="logits")(
        keras.layers.Embedding(40, 4)(ids)[:, 0]))
    with pytest.raises(UserError, match="'pooling' layer"):
        frozen_encoder.split(plain)


@pytest.mark.integration
def test_train_keeps_the_encoder_and_distillation_reuses_its_cache(tmp_path):
    """In-process train with --frozen_encoder, then the distillation teacher pass over the
    training texts plus unlabeled ones."""
    from conftest import write_csv
    from tiny_run import labelled_rows
    from slm_tf.data.config import DataConfig
    from slm_tf.data.pipeline import prepare_data
    from slm_tf.distill import cache
    from slm_tf.distill.augment import AugmentConfig
    from slm_tf.distill.run import DistillConfig, DistillExperiment, teacher_source
    from slm_tf.tokenizers import TokenizerConfig
    from slm_tf.train.artifacts import load_run
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig, train

    data_dir, run_dir = str(tmp_path / "tfds"), str(tmp_path / "teacher")
    dcfg = DataConfig(data=write_csv(tmp_path / "d.csv", labelled_rows(60)), data_dir=data_dir,
                      max_seq_len=SEQ, batch_size=16)
    model_cfg = ModelConfig(model="bert", hidden_dim=16, num_heads=2, ff_dim=32, num_layers=1,
                            pooling="mean_unit")
    tf.keras.utils.set_random_seed(3)
    metrics = train(ExperimentConfig(dcfg, TokenizerConfig(min_frequency=1), model_cfg,
                                     TrainConfig(output_dir=run_dir, epochs=2,
                                                 learning_rate=0.05, baseline=False),
                                     finetune=FineTuneConfig(frozen_encoder=True)))
    data = prepare_data(dcfg)
    run = load_run(run_dir)
    encoder, _ = frozen_encoder.split(run.model)
    [path] = [os.path.join(data_dir, "encoder_cache", f)
              for f in os.listdir(os.path.join(data_dir, "encoder_cache"))]
    keys, features = frozen_encoder.EncoderCache(path, None).entries()
    # Every split, each text once; the saved model's encoder reproduces every entry, so
    # training changed the head alone.
    splits = ("train", "validation", "test")
    seen = {bytes(k) for s in splits for k in
            frozen_encoder.row_keys(run.tokenizer.encode(data.texts(s), SEQ))}
    assert set(keys.tolist()) == seen and len(keys) == len(seen)
    ids = run.tokenizer.encode([t for s in splits for t in data.texts(s)], SEQ)
    order = {k: i for i, k in enumerate(keys.tolist())}
    got = features[[order[k] for k in frozen_encoder.row_keys(ids).tolist()]]
    np.testing.assert_allclose(got, encoder(ids).numpy(), atol=1e-5)
    # The run was scored from the cache: the saved model, run whole, gets the same accuracy.
    test_logits = run.model(run.tokenizer.encode(data.texts("test"), SEQ)).numpy()
    assert metrics["accuracy"] == pytest.approx(
        np.mean(test_logits.argmax(1) == np.asarray(data.labels("test"))))

    unlabeled = ["where is the nearest atm", "play some jazz", data.texts("train")[0]]
    (tmp_path / "u.txt").write_text("\n".join(unlabeled) + "\n")
    exp = DistillExperiment(dcfg, TokenizerConfig(), ModelConfig(), TrainConfig(),
                            DistillConfig(teacher_dir=run_dir,
                                          unlabeled_data=str(tmp_path / "u.txt")),
                            AugmentConfig())
    texts = data.texts("train") + unlabeled
    ds = teacher_source(exp, run, "digest", data, "train", texts,
                        data.labels("train") + [-1] * 3)
    # Only the two texts never seen were encoded.
    assert len(frozen_encoder.EncoderCache(path, None)) == len(keys) + 2
    logits = np.stack([t[2].numpy() for t in ds])
    np.testing.assert_allclose(logits, run.model(run.tokenizer.encode(texts, SEQ)).numpy(),
                               atol=1e-4)
    assert os.listdir(os.path.join(data_dir, cache.CACHE_DIR))
