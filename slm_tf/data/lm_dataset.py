"""Language-model datasets: documents -> one token stream -> blocks of ``context + 1`` tokens.

The stream is ``[EOD] doc1 [EOD] doc2 [EOD] ...``: the model sees every document boundary and
learns to predict a document's first token after EOD and EOD after its last. Each split is
packed from its own documents, so no block crosses a split. A block's first ``context`` tokens
are the input and its last ``context`` the targets.
"""
import math
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from slm_tf.tokenizers.reversible import EOD


def tokenize_documents(tokenizer, texts: Sequence[str], batch_size: int = 16) -> List[np.ndarray]:
    """Ids of each document from the tokenizer's in-graph encoder, run through tf.data."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    ds = ds.batch(batch_size).map(tokenizer.tf_token_ids).prefetch(tf.data.AUTOTUNE)
    out = []
    for ragged in ds:
        out.extend(np.asarray(row, np.int32) for row in ragged.to_list())
    return out


def token_stream(doc_ids: Sequence[Sequence[int]], eod_id: int) -> np.ndarray:
    """``[EOD] doc1 [EOD] doc2 ... [EOD]`` as one int32 array."""
    parts = [np.array([eod_id], np.int32)]
    for ids in doc_ids:
        parts += [np.asarray(ids, np.int32), np.array([eod_id], np.int32)]
    return np.concatenate(parts)


def pack_blocks(stream: np.ndarray, context: int, pad_id: int = 0,
                keep_remainder: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """``(blocks[N, context + 1], weights[N, context])``: consecutive blocks overlapping by one
    token, so every stream token after the first is a target exactly once. The last block is
    padded (weight 0 on padding targets) or dropped when ``keep_remainder`` is False."""
    targets = len(stream) - 1
    n = math.ceil(targets / context) if keep_remainder else targets // context
    blocks = np.full((n, context + 1), pad_id, np.int32)
    weights = np.zeros((n, context), np.float32)
    for b in range(n):
        piece = stream[b * context:b * context + context + 1]
        blocks[b, :len(piece)] = piece
        weights[b, :len(piece) - 1] = 1.0
    return blocks, weights


def eod_id(tokenizer) -> int:
    """The end-of-document id of ``tokenizer``."""
    return tokenizer.token_to_id[EOD]


def split_stream(texts: Sequence[str], tokenizer) -> np.ndarray:
    """The packed token stream of one split's documents."""
    return token_stream(tokenize_documents(tokenizer, texts), eod_id(tokenizer))


def training_dataset(stream: np.ndarray, context: int, batch_size: int,
                     seed: int = 0) -> tf.data.Dataset:
    """Endless shuffled ``(inputs[B, context], targets[B, context])`` windows starting at
    uniformly random stream positions (every epoch sees new block boundaries); one epoch is
    ``len(stream) // (context * batch_size)`` steps."""
    if len(stream) < context + 2:
        from slm_tf.errors import DataError
        raise DataError(f"the training text has {len(stream)} tokens, fewer than the context "
                        f"{context} + 2. Fix: give more text or lower the context.")
    tokens = tf.constant(stream)
    starts = len(stream) - context - 1

    def window(r):
        start = tf.cast(r % starts, tf.int32)
        block = tokens[start:start + context + 1]
        return block[:-1], block[1:]

    return (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            .map(window, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def evaluation_dataset(stream: np.ndarray, context: int, batch_size: int) -> tf.data.Dataset:
    """``(inputs, targets, weights)`` of the packed blocks, in order, every target once."""
    blocks, weights = pack_blocks(stream, context)
    return (tf.data.Dataset.from_tensor_slices((blocks[:, :-1], blocks[:, 1:], weights))
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def steps_per_epoch(stream: np.ndarray, context: int, batch_size: int) -> int:
    """Training steps that see about every token once."""
    return max(1, (len(stream) - 1) // (context * batch_size))
