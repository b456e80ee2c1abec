"""The language-model predictor: prompts -> continuations (``:predict``) and token streams
(``:generate``), with the sampling settings of a request checked against the server's limits.

It serves an LM export's ``prefill``/``decode`` files (TFLite by default, or the SavedModel)
with a key/value cache per request, or a finished ``train_lm.py`` run directory
(``model.keras`` + ``tokenizer/``; ``config.json`` and ``metrics.json`` mark it complete)
through the Keras model's incremental ``step`` (see :mod:`slm_tf.generation`).
"""
import dataclasses
import os
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


class _PerThread:
    """One runtime per thread that asks for it: a LiteRT interpreter is not thread-safe, and
    a stream runs on whichever thread of the loop's executor (or worker) picks it up. The
    request's state (the key/value cache) is an input and output of every call, never kept
    in the interpreter, so one interpreter serves its thread's requests one after another."""

    def __init__(self, make: Callable):
        self._make, self._local = make, threading.local()

    def get(self):
        """This thread's runtime, opened on first use."""
        rt = getattr(self._local, "rt", None)
        if rt is None:
            rt = self._local.rt = self._make()
        return rt


@PREDICTORS.register("lm")
class LmPredictor(Predictor):
    """Prompts -> ``{"text": continuation, "stop_reason"}``; ``stream`` yields tokens.

    An LM export (``export.json``) is served from its exported ``prefill``/``decode`` files:
    the Android bundle's TFLite file through LiteRT (``--format=tflite``, one interpreter per
    thread) or the export's SavedModel; its bundle supplies the tokenizer, end-of-document id
    and context, so the training run need not exist. A ``train_lm.py`` run directory is
    served through its Keras model's incremental ``step``. Both run the same token loop
    (:func:`slm_tf.generation.loop.continue_rows`)."""

    task = "lm"
    streams = True

    def __init__(self, version_dir: str, fmt: str, manifest: Dict):
        self.version_dir, self.fmt = version_dir, fmt
        self.model = None
        if manifest.get("is_run_dir"):  # a train_lm.py run, not an export
            self._load_run(version_dir)
        else:
            self._load_export(version_dir, fmt)

    def _load_run(self, run_dir: str) -> None:
        from slm_tf.errors import UserError
        from slm_tf.models import is_language_model
        from slm_tf.tokenizers import load_tokenizer
        from slm_tf.train import artifacts
        # Only what generation needs (model.keras in safe mode, tokenizer/).
        fix = f"rerun the train_lm.py command that wrote {run_dir}"
        self.model = artifacts.load_keras_model(os.path.join(run_dir, artifacts.MODEL_FILE), fix)
        if not is_language_model(self.model):
            raise UserError(f"{run_dir}: its model is not a language model. Fix: serve a "
                            "train_lm.py (--task=lm) run")
        self.tokenizer = load_tokenizer(os.path.join(run_dir, artifacts.TOKENIZER_DIR), fix)

    def _load_export(self, version_dir: str, fmt: str) -> None:
        from slm_tf.errors import UserError
        from slm_tf.export.bundle import BUNDLE_DIR
        from slm_tf.export.lm_runtimes import open_lm_runtime
        from slm_tf.io_utils import read_json
        from slm_tf.tokenizers import load_tokenizer
        fix = "re-export the run with scripts/export.py (a TFLite format writes android/)"
        bundle = os.path.join(version_dir, BUNDLE_DIR)
        spec = read_json(os.path.join(bundle, "bundle.json"), fix)
        self.tokenizer = load_tokenizer(bundle, fix)
        self.context = int(spec["max_context"])
        self.eod, self.pad = int(spec["tokenizer"]["eod_id"]), int(spec["tokenizer"]["pad_id"])
        if fmt == "tflite":
            path = os.path.join(bundle, spec["model_file"])
            open_lm_runtime(path, 1)  # a broken file fails at load, not per request
            self._runtime = _PerThread(lambda: open_lm_runtime(path, 1))
        else:
            path = os.path.join(version_dir, "saved_model")
            if not os.path.isdir(path):
                raise UserError(f"{path}: no SavedModel in this export. Fix: export with "
                                "--formats=...,saved_model or serve --format=tflite")
            shared = open_lm_runtime(path, None)  # TensorFlow functions are thread-safe
            self._runtime = _PerThread(lambda: shared)

    def new_runner(self):
        """The Keras model (TensorFlow runs it from several threads safely), or the
        per-thread runtimes of the exported files."""
        return self.model if self.model is not None else self._runtime

    def _generate(self, runner, texts: Sequence[str], params: SamplingConfig,
                  on_text=None) -> Tuple[List[str], List[str]]:
        if self.model is not None:
            from slm_tf.generation import generate
            reasons: List[str] = []
            out = generate(runner, self.tokenizer, texts, params, on_text=on_text,
                           reasons=reasons)
            return out, reasons
        # The exported files have a batch of one (their cache is [.., 1, ..]): one prompt at
        # a time, following bundle.json's decode loop.
        import numpy as np

        from slm_tf.generation.loop import continue_rows
        rt = runner.get()
        texts_out, reasons = [], []
        for row, prompt in enumerate(texts):
            prompt_ids = ([self.eod] + list(self.tokenizer.ids(prompt)))[-self.context:]
            ids = np.full((1, self.context), self.pad, np.int32)
            ids[0, :len(prompt_ids)] = prompt_ids
            logits, cache = rt.prefill(ids)
            carry = {"cache": cache, "position": len(prompt_ids)}

            def step(next_ids, done):
                out, carry["cache"] = rt.decode(np.asarray(next_ids, np.int32).reshape(1, 1),
                                                carry["cache"],
                                                np.array([carry["position"]], np.int32))
                carry["position"] += 1
                return out
            piece = (lambda _, p, row=row: on_text(row, p)) if on_text else None
            text, why = continue_rows(logits[:, len(prompt_ids) - 1], step, params, self.eod,
                                      self.tokenizer.detokenize, [prompt_ids], piece)
            texts_out.append(text[0])
            reasons.append(why[0])
        return texts_out, reasons

    def predict(self, runner, texts: Sequence[str], params=None) -> List[Dict]:
        """The prompts' continuations (one left-padded batch through the Keras model; one
        prompt after another through the exported files)."""
        out, reasons = self._generate(runner, texts, params or SamplingConfig())
        return [{"text": t, "stop_reason": r} for t, r in zip(out, reasons)]

    def stream(self, runner, prompt: str, params: SamplingConfig,
               on_piece: Callable[[str], None],
               cancelled: Optional[Callable[[], bool]] = None) -> Dict:
        """Generates for one prompt calling ``on_piece`` with each token's text; returns the
        whole continuation and its stop reason (``cancelled`` when the client left)."""
        def on_text(row, piece):
            if cancelled and cancelled():
                raise Cancelled()
            on_piece(piece)
        try:
            texts, reasons = self._generate(runner, [prompt], params, on_text)
        except Cancelled:
            return {"text": None, "stop_reason": "cancelled"}
        return {"text": texts[0], "stop_reason": reasons[0]}

    def signature(self) -> Dict:
        """TF Serving-style signature_def of the text signature."""
        return {"inputs": {"text": {"dtype": "DT_STRING", "tensor_shape": {"dim": [{"size": "-1"}]}}},
                "outputs": {"text": {"dtype": "DT_STRING"}, "stop_reason": {"dtype": "DT_STRING"}},
                "method_name": "tensorflow/serving/predict",
                "generate": "POST /v1/models/{name}:generate (server-sent events)"}
