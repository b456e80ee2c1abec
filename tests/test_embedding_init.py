"""--init_embeddings_from: each student row is the PCA of the teacher rows its token maps to."""
import json

import numpy as np
import pytest

from slm_tf.errors import UserError
from slm_tf.models.embedding_init import (EmbeddingSource, init_embeddings, load_source,
                                          reduced_table)
from slm_tf.tokenizers.wordpiece import WordPieceTokenizer

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
TEACHER_VOCAB = SPECIAL + ["play", "##ing", "music", "song", "##s", "lost", "##card"]
STUDENT_VOCAB = SPECIAL + ["playing", "music", "songs", "##s", "lostcard", "zzz"]
# Written out by hand: the teacher ids each student token averages (playing = play + ##ing,
# songs = song + ##s, lostcard = lost + ##card; ##s is a teacher token itself; zzz has no
# teacher pieces at all -> [UNK]).
HAND_MAP = [[0], [1], [2], [3], [4, 5], [6], [7, 8], [8], [9, 10], [1]]


def _teacher_table():
    return np.random.default_rng(7).normal(size=(len(TEACHER_VOCAB), 6)).astype(np.float32)


def _pca_by_svd(rows, dim):
    centred = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:dim].T


def _same_up_to_column_signs(a, b):
    signs = np.sign(np.sum(a * b, axis=0))  # a principal axis is defined up to its sign
    np.testing.assert_allclose(a, b * signs, atol=1e-5)


def test_each_row_is_the_pca_of_the_teacher_rows_it_maps_from():
    table = _teacher_table()
    source = EmbeddingSource(table, WordPieceTokenizer(TEACHER_VOCAB), "tiny")
    got = reduced_table(STUDENT_VOCAB, source, 3)
    mapped = np.stack([table[ids].mean(axis=0) for ids in HAND_MAP])
    assert got.shape == (len(STUDENT_VOCAB), 3)
    _same_up_to_column_signs(got, _pca_by_svd(mapped, 3))


def test_too_wide_an_embedding_for_the_source_is_refused():
    source = EmbeddingSource(_teacher_table(), WordPieceTokenizer(TEACHER_VOCAB), "tiny")
    with pytest.raises(UserError, match="embedding_dim"):
        reduced_table(STUDENT_VOCAB, source, 7)  # 6-wide rows give at most 6 components


def test_a_student_starts_from_a_bert_checkpoint_folder(tmp_path):
    from safetensors.numpy import save_file
    from slm_tf.models import ModelConfig, build_model
    table = _teacher_table()
    save_file({"embeddings.word_embeddings.weight": table}, str(tmp_path / "model.safetensors"))
    (tmp_path / "vocab.txt").write_text("\n".join(TEACHER_VOCAB) + "\n")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    model = build_model(ModelConfig(model="cnn", embedding_dim=4, num_filters=2,
                                    kernel_sizes=["2"]), len(STUDENT_VOCAB), 3, 8)
    counts = init_embeddings(model, STUDENT_VOCAB, load_source(str(tmp_path)))
    mapped = np.stack([table[ids].mean(axis=0) for ids in HAND_MAP])
    _same_up_to_column_signs(model.get_layer("token_embedding").get_weights()[0],
                             _pca_by_svd(mapped, 4))
    # [UNK] itself is the same token; zzz is the one token found only as [UNK].
    assert counts == {"tokens": 10, "same_token": 6, "split": 3, "unknown": 1}


def test_teacher_without_a_teacher_and_a_wrong_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="needs a teacher"):
        load_source("teacher")
    with pytest.raises(UserError, match="neither a finished run directory"):
        load_source(str(tmp_path))


def test_a_student_starts_from_a_run_directory(tmp_path):
    """A finished run as the source: its first Embedding layer, indexed by its tokenizer."""
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.train.artifacts import load_run
    from tiny_run import make_run
    run_dir = str(tmp_path / "teacher")
    make_run(run_dir, str(tmp_path / "tfds"))
    run = load_run(run_dir)
    import tf_keras as keras
    table = [layer for layer in run.model.layers
             if isinstance(layer, keras.layers.Embedding)][0].get_weights()[0]
    ids = run.tokenizer.token_to_id
    vocab = SPECIAL + ["card", "refund", "qqq"]  # qqq: no teacher pieces -> the teacher's [UNK]
    hand = [[0], [1], [2], [3], [ids["card"]], [ids["refund"]], [1]]
    student = build_model(ModelConfig(model="cnn", embedding_dim=4, num_filters=2,
                                      kernel_sizes=["2"]), len(vocab), 3, 8)
    init_embeddings(student, vocab, load_source(run_dir))
    mapped = np.stack([table[i].mean(axis=0) for i in hand])
    _same_up_to_column_signs(student.get_layer("token_embedding").get_weights()[0],
                             _pca_by_svd(mapped, 4))


def test_the_pipeline_students_take_the_teacher_stage_as_source(tmp_path):
    from slm_tf.pipeline.config import PipelineConfig
    from slm_tf.pipeline.stages import Context
    recipe = tmp_path / "student.flags"
    recipe.write_text("--data=banking77\n--model=cnn\n--init_embeddings_from=teacher\n"
                      "--noauto_recipe\n")
    teacher = str(tmp_path / "my_teacher")
    ctx = Context(PipelineConfig(output_dir=str(tmp_path / "pipe"), student_recipe=str(recipe),
                                 teacher_dir=teacher), [])
    (_, _, model, _), _ = ctx.student(str(tmp_path / "pipe" / "student"))
    assert model.init_embeddings_from == teacher


def test_frozen_embeddings_keep_their_start_through_training(tmp_path):
    """--freeze_embeddings: a training step moves the convolutions, not the started rows."""
    import tf_keras as keras
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.models.embedding_init import start_embeddings
    from safetensors.numpy import save_file
    save_file({"embeddings.word_embeddings.weight": _teacher_table()},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "vocab.txt").write_text("\n".join(TEACHER_VOCAB) + "\n")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    cfg = ModelConfig(model="cnn", embedding_dim=4, num_filters=2, kernel_sizes=["2"],
                      init_embeddings_from=str(tmp_path), freeze_embeddings=True)
    model = build_model(cfg, len(STUDENT_VOCAB), 3, 8)
    start_embeddings(model, STUDENT_VOCAB, cfg)
    emb, conv = model.get_layer("token_embedding"), model.get_layer("conv2")
    before, conv_before = emb.get_weights()[0], conv.get_weights()[0]
    model.compile(optimizer=keras.optimizers.Adam(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.array([[2, 4, 6, 3, 0, 0, 0, 0], [2, 8, 9, 5, 3, 0, 0, 0]], np.int32)
    model.fit(ids, np.array([0, 2]), epochs=2, verbose=0)
    np.testing.assert_array_equal(emb.get_weights()[0], before)
    assert not np.allclose(conv.get_weights()[0], conv_before)
