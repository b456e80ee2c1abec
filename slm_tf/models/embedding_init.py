"""``--init_embeddings_from``: start a model's token embeddings from a larger model's table.

Each token of the model's vocabulary is looked up in the source's vocabulary (or split into
the source's pieces, whose rows are averaged), and the resulting rows are reduced by PCA to
the model's embedding width. A student that starts this way knows words it never sees
labelled (e.g. the out-of-scope words of clinc150) as the teacher does, instead of as noise.
"""
import dataclasses
import os
from typing import Dict, List, Sequence

import numpy as np

from slm_tf.errors import UserError

TEACHER = "teacher"


@dataclasses.dataclass
class EmbeddingSource:
    """A source table ``[source vocab, width]`` and the tokenizer whose ids index it."""
    table: np.ndarray
    tokenizer: object  # slm_tf.tokenizers.Tokenizer
    name: str


def source_pieces(token: str, source_tok) -> List[int]:
    """The source ids a token maps to: the same token if the source has it, else the source's
    pieces of its text (a ``##`` continuation is split as a word: the source may lack that
    suffix piece); the source's [UNK] when nothing is left."""
    if token in source_tok.token_to_id:
        return [source_tok.token_to_id[token]]
    text = token[2:] if token.startswith("##") and len(token) > 2 else token
    ids = [source_tok.token_to_id.get(t, source_tok.unk_id) for t in source_tok.tokenize(text)]
    known = [i for i in ids if i != source_tok.unk_id]
    return known or [source_tok.unk_id]


def mapped_rows(vocab: Sequence[str], source: EmbeddingSource) -> np.ndarray:
    """``[len(vocab), source width]``: each token's source rows, averaged."""
    return np.stack([source.table[source_pieces(t, source.tokenizer)].mean(axis=0)
                     for t in vocab]).astype(np.float32)


def reduced_table(vocab: Sequence[str], source: EmbeddingSource, dim: int) -> np.ndarray:
    """The mapped rows projected on their first ``dim`` principal components (scikit-learn's
    PCA, fitted on those rows); rows kept as they are when the widths already agree."""
    rows = mapped_rows(vocab, source)
    if rows.shape[1] == dim:
        return rows
    if dim > min(rows.shape):
        raise UserError(f"--init_embeddings_from={source.name}: the source's {rows.shape[1]}-wide "
                        f"rows of {rows.shape[0]} tokens give at most {min(rows.shape)} "
                        f"components, not --embedding_dim={dim}. Fix: lower --embedding_dim.")
    from sklearn.decomposition import PCA
    return PCA(n_components=dim, random_state=0).fit_transform(rows).astype(np.float32)


def _first_embedding(model):
    import tf_keras as keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.Embedding):
            return layer
    return None


def load_source(value: str, teacher=None) -> EmbeddingSource:
    """The table named by ``--init_embeddings_from``: ``teacher`` (distillation's teacher run,
    passed as ``teacher``), a run directory (its first Embedding layer and tokenizer), or a
    BERT-family checkpoint directory / ``pip:<package>`` (its word-piece embeddings)."""
    from slm_tf.models.bert import check_checkpoint, read_checkpoint_weights, resolve_checkpoint
    if teacher is not None and value != TEACHER and os.path.realpath(
            resolve_checkpoint(value)) == os.path.realpath(teacher.run_dir):
        value = TEACHER  # the teacher distill.py has loaded already
    if value == TEACHER:
        if teacher is None:
            raise UserError(f"--init_embeddings_from={TEACHER} needs a teacher (distill.py, or "
                            "the pipeline's student stages). Fix: give a run directory or a "
                            "BERT checkpoint directory instead.")
        run = teacher
    else:
        path = resolve_checkpoint(value)
        if os.path.isfile(os.path.join(path, "model.safetensors")):
            check_checkpoint(path)
            from slm_tf.tokenizers.base import VOCAB_FILE, read_vocab
            from slm_tf.tokenizers.wordpiece import WordPieceTokenizer
            table = read_checkpoint_weights(path).get("embeddings.word_embeddings.weight")
            if table is None:
                raise UserError(f"{path}/model.safetensors has no embeddings.word_embeddings."
                                "weight. Fix: point --init_embeddings_from at a BERT checkpoint.")
            return EmbeddingSource(table, WordPieceTokenizer(read_vocab(
                os.path.join(path, VOCAB_FILE))), path)
        from slm_tf.train.artifacts import is_complete, load_run
        if not is_complete(path):
            raise UserError(f"--init_embeddings_from={value}: neither a finished run directory "
                            "nor a BERT checkpoint directory (config.json, model.safetensors, "
                            f"vocab.txt). Fix: give one of those, or {TEACHER} in distill.py.")
        run = load_run(path)
    layer = _first_embedding(run.model)
    if layer is None:
        raise UserError(f"--init_embeddings_from: the model in {run.run_dir} has no Embedding "
                        "layer. Fix: start from a run whose model has one.")
    return EmbeddingSource(layer.get_weights()[0], run.tokenizer, run.run_dir)


def init_embeddings(model, vocab: Sequence[str], source: EmbeddingSource) -> Dict[str, int]:
    """Overwrites ``model``'s first Embedding layer with ``reduced_table``; returns how many
    tokens the source had as they are, split into pieces, or only as [UNK]."""
    layer = _first_embedding(model)
    if layer is None:
        raise UserError(f"--init_embeddings_from: the {model.name} model has no token "
                        "Embedding layer. Fix: drop the flag for this architecture.")
    if layer.input_dim != len(vocab):
        raise UserError(f"--init_embeddings_from: the embedding has {layer.input_dim} rows but "
                        f"the vocabulary {len(vocab)} tokens.")
    layer.set_weights([reduced_table(vocab, source, layer.output_dim)])
    tok = source.tokenizer
    exact = sum(t in tok.token_to_id for t in vocab)
    unk = sum(source_pieces(t, tok) == [tok.unk_id] and t != tok.vocab[tok.unk_id]
              for t in vocab)
    return {"tokens": len(vocab), "same_token": exact, "split": len(vocab) - exact - unk,
            "unknown": unk}


def start_embeddings(model, vocab: Sequence[str], cfg, teacher=None) -> Dict:
    """``--init_embeddings_from`` and ``--freeze_embeddings`` of ``cfg`` (a ModelConfig)
    applied to a freshly built ``model``; what was done, for the log."""
    done: Dict = {}
    if cfg.init_embeddings_from:
        source = load_source(cfg.init_embeddings_from, teacher)
        done = {"source": source.name, **init_embeddings(model, vocab, source)}
    if cfg.freeze_embeddings:
        layer = _first_embedding(model)
        if layer is None:
            raise UserError(f"--freeze_embeddings: the {model.name} model has no token "
                            "Embedding layer. Fix: drop the flag for this architecture.")
        layer.trainable = False
        done["frozen"] = True
    return done
