"""Batched generation with streaming and stop strings."""
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from slm_tf.data.lm_dataset import eod_id
from slm_tf.generation.sampling import SamplingConfig, choose_tokens


def generate(model, tokenizer, prompts: Sequence[str], cfg: SamplingConfig = None,
             on_text: Optional[Callable[[int, str], None]] = None,
             reasons: Optional[List[str]] = None) -> List[str]:
    """Continuations of ``prompts`` (one batch, left-padded). ``on_text(row, piece)`` receives
    each row's text as it is produced (text that could still begin a stop string is held back
    until it cannot). A row ends at an end-of-document token, a stop string or
    ``max_new_tokens``; a ``reasons`` list given receives why each row ended (``"eod"``,
    ``"stop"`` or ``"length"``)."""
    cfg = cfg or SamplingConfig()
    rng = np.random.default_rng(cfg.seed)
    eod = eod_id(tokenizer)
    context = int(model.max_seq_len)
    encoded = [([eod] + list(tokenizer.ids(p)))[-context:] for p in prompts]
    width = max(len(e) for e in encoded)
    ids = np.zeros((len(prompts), width), np.int32)
    mask = np.zeros((len(prompts), width), np.float32)
    for row, e in enumerate(encoded):
        ids[row, width - len(e):] = e
        mask[row, width - len(e):] = 1.0
    state = model.init_state(len(prompts))
    logits, state = model.step(tf.constant(ids), state, tf.constant(mask))
    seen = [list(e) for e in encoded]
    new: List[List[int]] = [[] for _ in prompts]
    texts = [""] * len(prompts)
    streamed = [0] * len(prompts)
    done = [False] * len(prompts)
    why = ["length"] * len(prompts)
    hold = max((len(s) for s in cfg.stop), default=1) - 1
    for _ in range(cfg.max_new_tokens):
        next_ids, _ = choose_tokens(np.asarray(logits[:, -1]), cfg, rng, seen)
        for row, tok in enumerate(next_ids):
            if done[row]:
                continue
            if tok == eod:
                done[row], why[row] = True, "eod"
            else:
                new[row].append(int(tok))
                seen[row].append(int(tok))
                texts[row] = tokenizer.detokenize(new[row])
                cut = min((i for i in (texts[row].find(s) for s in cfg.stop) if i >= 0),
                          default=-1)
                if cut >= 0:
                    texts[row], done[row], why[row] = texts[row][:cut], True, "stop"
            if on_text:
                upto = len(texts[row]) if done[row] else max(streamed[row],
                                                             len(texts[row]) - hold)
                if upto > streamed[row]:
                    on_text(row, texts[row][streamed[row]:upto])
                    streamed[row] = upto
        if all(done):
            break
        step_mask = np.array([[0.0 if d else 1.0] for d in done], np.float32)
        logits, state = model.step(tf.constant(next_ids.astype(np.int32)[:, None]), state,
                                   tf.constant(step_mask))
    if on_text:
        for row in range(len(prompts)):
            if len(texts[row]) > streamed[row]:
                on_text(row, texts[row][streamed[row]:])
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
