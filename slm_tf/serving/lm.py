"""The language-model predictor: prompts -> continuations (``:predict``) and token streams
(``:generate``), with the sampling settings of a request checked against the server's limits.

It serves a finished ``train_lm.py`` run directory (``model.keras`` + ``tokenizer/``;
``config.json`` and ``metrics.json`` mark it complete) through
the Keras model's incremental ``step`` (key/value cache or recurrent state, see
:mod:`slm_tf.generation`).
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

from slm_tf.generation.sampling import SamplingConfig
from slm_tf.serving.predictors import PREDICTORS, Predictor

STOP_REASONS = ("eod", "stop", "length")  # end-of-document token, a stop string, the budget
MAX_STOP_STRINGS = 8
MAX_STOP_CHARS = 64


class Cancelled(Exception):
    """The client went away: generation stops at the next token."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for (ServeConfig's --max_new_tokens and the fixed caps)."""
    max_new_tokens: int
    default_new_tokens: int


def sampling_from_request(req: Dict, limits: Limits) -> SamplingConfig:
    """``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``,
    ``seed`` and ``stop`` of a request -> a SamplingConfig; a bad value raises ValueError
    (answered 400) and a value over a limit OverflowError (answered 413), each with a message."""
    def number(key, default, kind, ok, rule):
        value = req.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and value != int(value)) or not ok(value):
            raise ValueError(f'"{key}" must be {rule}')
        return kind(value)

    n = number("max_new_tokens", limits.default_new_tokens, int, lambda v: v > 0,
               "a positive integer")
    if n > limits.max_new_tokens:
        raise OverflowError(f'"max_new_tokens" {n} exceeds the limit of {limits.max_new_tokens}')
    stop = req.get("stop", [])
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError('"stop" must be a non-empty string or a list of them')
    if len(stop) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise OverflowError(f'"stop" allows at most {MAX_STOP_STRINGS} strings of at most '
                            f"{MAX_STOP_CHARS} characters (over the limit)")
    return SamplingConfig(
        max_new_tokens=n,
        temperature=number("temperature", 0.8, float, lambda v: 0 <= v <= 100,
                           "a number in [0, 100] (0 = greedy)"),
        top_k=number("top_k", 0, int, lambda v: v >= 0, "an integer >= 0 (0 = all)"),
        top_p=number("top_p", 1.0, float, lambda v: 0 < v <= 1, "a number in (0, 1]"),
        repetition_penalty=number("repetition_penalty", 1.0, float, lambda v: 0 < v <= 100,
                                  "a number in (0, 100]"),
        seed=number("seed", 0, int, lambda v: 0 <= v < 2 ** 32, "an integer in [0, 2^32)"),
        stop=list(stop))


@PREDICTORS.register("lm")
class LmPredictor(Predictor):
    """Prompts -> ``{"text": continuation, "stop_reason"}``; ``stream`` yields tokens."""

    task = "lm"
    streams = True

    def __init__(self, version_dir: str, fmt: str, manifest: Dict):
        import os

        from slm_tf.errors import UserError
        from slm_tf.models import is_language_model
        from slm_tf.tokenizers import load_tokenizer
        from slm_tf.train import artifacts
        # Only what generation needs (model.keras in safe mode, tokenizer/): the run's
        # SavedModel is not read.
        # An LM export (export.json) is served through the Keras model of the run it names
        # (its run_dir, relative to the export) until the server runs the exported files.
        run_dir = os.path.normpath(os.path.join(version_dir, manifest.get("run_dir", ".")))
        fix = f"rerun the train_lm.py command that wrote {run_dir}"
        self.model = artifacts.load_keras_model(os.path.join(run_dir, artifacts.MODEL_FILE), fix)
        if not is_language_model(self.model):
            raise UserError(f"{version_dir}: its model is not a language model. Fix: serve a "
                            "train_lm.py (--task=lm) run")
        self.tokenizer = load_tokenizer(os.path.join(run_dir, artifacts.TOKENIZER_DIR), fix)
        self.version_dir, self.fmt = version_dir, fmt

    def new_runner(self):
        """The shared Keras model (TensorFlow runs it from several threads safely)."""
        return self.model

    def predict(self, runner, texts: Sequence[str], params=None) -> List[Dict]:
        """The prompts' continuations, generated as one left-padded batch."""
        from slm_tf.generation import generate
        reasons: List[str] = []
        out = generate(runner, self.tokenizer, texts, params, reasons=reasons)
        return [{"text": t, "stop_reason": r} for t, r in zip(out, reasons)]

    def stream(self, runner, prompt: str, params: SamplingConfig,
               on_piece: Callable[[str], None],
               cancelled: Optional[Callable[[], bool]] = None) -> Dict:
        """Generates for one prompt calling ``on_piece`` with each token's text; returns the
        whole continuation and its stop reason (``cancelled`` when the client left)."""
        from slm_tf.generation import generate

        def on_text(row, piece):
            if cancelled and cancelled():
                raise Cancelled()
            on_piece(piece)
        reasons: List[str] = []
        try:
            text = generate(runner, self.tokenizer, [prompt], params, on_text=on_text,
                            reasons=reasons)[0]
        except Cancelled:
            return {"text": None, "stop_reason": "cancelled"}
        return {"text": text, "stop_reason": reasons[0]}

    def signature(self) -> Dict:
        """TF Serving-style signature_def of the text signature."""
        return {"inputs": {"text": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
                "outputs": {"text": {"dtype": "DT_STRING"}, "stop_reason": {"dtype": "DT_STRING"}},
                "method_name": "tensorflow/serving/predict",
                "generate": "POST /v1/models/{name}:generate (server-sent events)"}
