"""Language-model metrics: cross-entropy, perplexity, bits per character, next-token accuracy.

Bits per character divides the total information (nats over every predicted token, EOD
included) by the characters of the text it spells (each EOD counts as one separator
character), so tokenizers with different vocabularies, and compressors, compare directly.
"""
import math
from typing import Dict, Sequence

import tensorflow as tf

from slm_tf.data.lm_dataset import evaluation_dataset, split_stream


def bits_per_character(total_nats: float, characters: int) -> float:
    """``total_nats / characters / ln 2``."""
    return total_nats / characters / math.log(2)


def lm_metrics(total_nats: float, tokens: int, characters: int, correct: int) -> Dict:
    """The metric report from the sums of one evaluation."""
    ce = total_nats / tokens
    return {"cross_entropy": ce, "perplexity": math.exp(ce), "bits_per_token": ce / math.log(2),
            "bits_per_character": bits_per_character(total_nats, characters),
            "accuracy": correct / tokens, "tokens": int(tokens), "characters": int(characters)}


def evaluate_lm(model, tokenizer, texts: Sequence[str], context: int,
                batch_size: int = 32) -> Dict:
    """Scores ``model`` on documents ``texts`` (every token predicted once, in blocks of
    ``context``)."""
    stream = split_stream(texts, tokenizer)
    forward = _forward(model)
    nats, tokens, correct = 0.0, 0, 0
    for x, y, w in evaluation_dataset(stream, context, batch_size):
        logits = tf.cast(forward(x), tf.float32)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        nats += float(tf.reduce_sum(tf.cast(ce * w, tf.float64)))
        correct += int(tf.reduce_sum(hit * w))
        tokens += int(tf.reduce_sum(w))
    characters = sum(len(t) for t in texts) + len(texts)
    return lm_metrics(nats, tokens, characters, correct)


def _forward(model):
    # One trace per model for every batch and block length (tracing dominates small evals).
    if not hasattr(model, "_lm_forward"):
        model._lm_forward = tf.function(lambda x: model(x, training=False),
                                        input_signature=[tf.TensorSpec([None, None], tf.int32)])
    return model._lm_forward


def scored_text(texts: Sequence[str]) -> str:
    """The text :func:`evaluate_lm` scores, spelled out: each document followed by one line
    break standing for its end-of-document token (same character count), so compressors
    pay for the boundaries the model predicts."""
    return "".join(t + "\n" for t in texts)


def compressor_bits_per_character(text: str) -> Dict[str, float]:
    """Bits per character of ``bzip2 -9`` and ``xz -9`` (preset 9, extreme off) on ``text``:
    tokenizer-free reference points."""
    import bz2
    import lzma
    data = text.encode("utf-8")
    return {"bzip2_9": 8 * len(bz2.compress(data, 9)) / len(text),
            "xz_9": 8 * len(lzma.compress(data, preset=9)) / len(text)}
