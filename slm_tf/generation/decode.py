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


def decoding_speed(model, prompt_ids: Sequence[int], new_tokens: int, repeats: int = 5) -> dict:
    """Greedy tokens/s with the model's ``step`` (cache or state) and by recomputing the
    whole window every token (the reference), on one prompt; each timed ``repeats`` times in
    alternation and the medians compared, so one stall on a busy machine does not decide the
    ratio. Within the context both give the same ids; beyond it the cache is a sliding window
    whose keys were computed with longer histories, so continuations may differ."""
    import time
    context = int(model.max_seq_len)
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec([1, None], tf.int32)])
    prompt_ids = list(prompt_ids)[-context:]

    def recompute():
        ids = list(prompt_ids)
        for _ in range(new_tokens):
            logits = forward(tf.constant([ids[-context:]], tf.int32))
            ids.append(int(np.argmax(logits.numpy()[0, -1])))
        return ids[len(prompt_ids):]

    def cached():
        logits, state = model.step(tf.constant([prompt_ids], tf.int32), model.init_state(1))
        out = []
        for _ in range(new_tokens):
            out.append(int(np.argmax(logits.numpy()[0, -1])))
            logits, state = model.step(tf.constant([[out[-1]]], tf.int32), state)
        return out

    # Trace (and compile) the full forward and the prompt's and one token's step outside
    # the timing.
    forward(tf.constant([prompt_ids], tf.int32))
    _, warm = model.step(tf.constant([prompt_ids], tf.int32), model.init_state(1))
    model.step(tf.constant([[prompt_ids[-1]]], tf.int32), warm)
    seconds, tokens = {"recompute": [], "cached": []}, {}
    for _ in range(max(1, repeats)):
        for name, decode in (("recompute", recompute), ("cached", cached)):
            start = time.perf_counter()
            tokens[name] = decode()
            seconds[name].append(time.perf_counter() - start)
    recomputed, kept = tokens["recompute"], tokens["cached"]
    recompute_s, cached_s = (float(np.median(seconds[k])) for k in ("recompute", "cached"))
    inside = max(0, context - len(prompt_ids))
    return {"prompt_tokens": len(prompt_ids), "new_tokens": new_tokens, "repeats": repeats,
            "cached_tokens_per_s": new_tokens / cached_s,
            "recompute_tokens_per_s": new_tokens / recompute_s,
            "speedup": recompute_s / cached_s,
            "seconds": {k: [round(v, 4) for v in s] for k, s in seconds.items()},
            "same_tokens": kept == recomputed,
            "same_tokens_within_context": kept[:inside] == recomputed[:inside],
            "tokens_within_context": inside}
