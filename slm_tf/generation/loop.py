"""The token loop shared by every decoder (the Keras model's ``step``, the exported
``prefill``/``decode`` files the server runs): choose each row's next token, stop a row at the
end-of-document token, a stop string or the budget, and stream each row's text. TensorFlow-free,
so a server running LiteRT files never loads TensorFlow."""
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from slm_tf.generation.sampling import SamplingConfig, choose_tokens

# step(next_ids [rows] int, done [rows] bool) -> the next logits [rows, vocab]
Step = Callable[[np.ndarray, List[bool]], np.ndarray]


def continue_rows(logits: np.ndarray, step: Step, cfg: SamplingConfig, eod: int,
                  detokenize: Callable[[Sequence[int]], str], seen: List[List[int]],
                  on_text: Optional[Callable[[int, str], None]] = None
                  ) -> Tuple[List[str], List[str]]:
    """``(texts, reasons)``: the continuation of every row from its next-token ``logits``
    [rows, vocab] (``seen``: each row's prompt ids, for the repetition penalty). ``step`` feeds
    the chosen tokens and returns the following logits; it is not called after the last
    token. ``on_text(row, piece)`` receives each row's text as it is produced (text that could
    still begin a stop string is held back until it cannot). A reason is ``"eod"``, ``"stop"``
    or ``"length"``."""
    rows = len(seen)
    rng = np.random.default_rng(cfg.seed)
    seen = [list(s) for s in seen]
    new: List[List[int]] = [[] for _ in range(rows)]
    texts, streamed = [""] * rows, [0] * rows
    done, why = [False] * rows, ["length"] * rows
    hold = max((len(s) for s in cfg.stop), default=1) - 1
    for t in range(cfg.max_new_tokens):
        next_ids, _ = choose_tokens(np.asarray(logits), cfg, rng, seen)
        for row, tok in enumerate(next_ids):
            if done[row]:
                continue
            if tok == eod:
                done[row], why[row] = True, "eod"
            else:
                new[row].append(int(tok))
                seen[row].append(int(tok))
                texts[row] = detokenize(new[row])
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
        if all(done) or t + 1 == cfg.max_new_tokens:
            break
        logits = step(next_ids, done)
    if on_text:
        for row in range(rows):
            if len(texts[row]) > streamed[row]:
                on_text(row, texts[row][streamed[row]:])
    return texts, why
