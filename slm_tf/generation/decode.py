"""Batched generation with streaming and stop strings."""
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from slm_tf.data.lm_dataset import eod_id
from slm_tf.generation.loop import continue_rows
from slm_tf.generation.sampling import SamplingConfig


def generate(model, tokenizer, prompts: Sequence[str], cfg: SamplingConfig = None,
             on_text: Optional[Callable[[int, str], None]] = None,
             reasons: Optional[List[str]] = None) -> List[str]:
    """Continuations of ``prompts`` (one batch, left-padded). ``on_text(row, piece)`` receives
    each row's text as it is produced (text that could still begin a stop string is held back
    until it cannot). A row ends at an end-of-document token, a stop string or
    ``max_new_tokens``; a ``reasons`` list given receives why each row ended (``"eod"``,
    ``"stop"`` or ``"length"``)."""
    cfg = cfg or SamplingConfig()
    eod = eod_id(tokenizer)
    context = int(model.max_seq_len)
    encoded = [([eod] + list(tokenizer.ids(p)))[-context:] for p in prompts]
    width = max(len(e) for e in encoded)
    ids = np.zeros((len(prompts), width), np.int32)
    mask = np.zeros((len(prompts), width), np.float32)
    for row, e in enumerate(encoded):
        ids[row, width - len(e):] = e
        mask[row, width - len(e):] = 1.0
    logits, state = model.step(tf.constant(ids), model.init_state(len(prompts)),
                               tf.constant(mask))
    carry = [state]

    def step(next_ids: np.ndarray, done: List[bool]) -> np.ndarray:
        step_mask = np.array([[0.0 if d else 1.0] for d in done], np.float32)
        out, carry[0] = model.step(tf.constant(next_ids.astype(np.int32)[:, None]), carry[0],
                                   tf.constant(step_mask))
        return np.asarray(out[:, -1])
    texts, why = continue_rows(np.asarray(logits[:, -1]), step, cfg, eod, tokenizer.detokenize,
                               encoded, on_text)
    if reasons is not None:
        reasons[:] = why
    return texts


def decoding_speed(model, prompt_ids: Sequence[int], new_tokens: int) -> dict:
    """Greedy tokens/s with the model's ``step`` (cache or state) and by recomputing the
    whole window every token (the reference), on one prompt. Within the context both give the
    same ids; beyond it the cache is a sliding window whose keys were computed with longer
    histories, so continuations may differ."""
    import time
    context = int(model.max_seq_len)
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec([1, None], tf.int32)])
    ids = list(prompt_ids)
    forward(tf.constant([ids[-context:]], tf.int32))  # trace once, outside the timing
    start = time.perf_counter()
    for _ in range(new_tokens):
        logits = forward(tf.constant([ids[-context:]], tf.int32))
        ids.append(int(np.argmax(logits.numpy()[0, -1])))
    recompute_s = time.perf_counter() - start
    recomputed = ids[len(prompt_ids):]
    prompt_ids = list(prompt_ids)[-context:]
    state = model.init_state(1)
    # Trace (and compile) the prompt's and a single token's step once, outside the timing.
    _, warm = model.step(tf.constant([prompt_ids], tf.int32), state)
    model.step(tf.constant([[prompt_ids[-1]]], tf.int32), warm)
    start = time.perf_counter()
    logits, state = model.step(tf.constant([list(prompt_ids)], tf.int32), state)
    cached = []
    for _ in range(new_tokens):
        cached.append(int(np.argmax(logits.numpy()[0, -1])))
        logits, state = model.step(tf.constant([[cached[-1]]], tf.int32), state)
    cached_s = time.perf_counter() - start
    inside = max(0, context - len(prompt_ids))
    return {"prompt_tokens": len(prompt_ids), "new_tokens": new_tokens,
            "cached_tokens_per_s": new_tokens / cached_s,
            "recompute_tokens_per_s": new_tokens / recompute_s,
            "speedup": recompute_s / cached_s, "same_tokens": cached == recomputed,
            "same_tokens_within_context": cached[:inside] == recomputed[:inside],
            "tokens_within_context": inside}
