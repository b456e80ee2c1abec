"""``ServeConfig``: every option of scripts/serve.py, mirrored 1:1 by its flags."""
import dataclasses

from slm_tf.config import field, non_negative, positive


@dataclasses.dataclass
class ServeConfig:
    """Options of scripts/serve.py (one flag each)."""
    model: list = field([], "name=<export dir> of a model to serve (repeat the flag for more). "
                        "The dir holds version folders <dir>/<n>/ (each an export.py output) or "
                        "is itself one export, served as version 1.")
    host: str = field("127.0.0.1", "Address to listen on (0.0.0.0 exposes it to the network).")
    port: int = field(8501, "TCP port (TF Serving's REST port is 8501).", validate=positive,
                      rule="> 0")
    format: str = field("tflite", "Which file of each export to serve.",
                        choices=("tflite", "saved_model"))
    max_batch_size: int = field(32, "Texts run through the model together; 1 turns batching "
                                "off.", validate=positive, rule="> 0")
    batch_timeout_ms: float = field(0.0, "How long a batch waits for more requests beyond "
                                    "those already queued (0: none, so an idle server adds no "
                                    "latency; under load requests queue while the workers are "
                                    "busy and still share batches).",
                                    validate=non_negative, rule=">= 0")
    num_workers: int = field(2, "Inference threads, each with its own interpreter; 0 runs "
                             "the batches on the event loop's thread (fastest for a model "
                             "taking well under a millisecond, e.g. a small int8 classifier).",
                             validate=non_negative, rule=">= 0")
    poll_s: float = field(2.0, "How often export dirs are scanned for new versions.",
                          validate=positive, rule="> 0")
    api_keys_file: str = field("", "File with one API key per line; requests must then send "
                               "'Authorization: Bearer <key>' or 'X-API-Key: <key>'.")
    max_body_bytes: int = field(1_000_000, "Largest request body accepted (413 above).",
                                validate=positive, rule="> 0")
    max_texts: int = field(256, "Most texts in one request (413 above).", validate=positive,
                           rule="> 0")
    max_chars: int = field(10_000, "Most characters in one text (413 above).",
                           validate=positive, rule="> 0")
    max_new_tokens: int = field(512, "Most tokens a language-model request may ask for "
                                "(413 above).", validate=positive, rule="> 0")
    default_new_tokens: int = field(64, "Tokens generated when a request names no "
                                    "max_new_tokens.", validate=positive, rule="> 0")
    cors_origins: list = field([], "Origins allowed by CORS; none unless given.")
    drift_window: int = field(1000, "Latest predictions the drift PSI is computed over.",
                              validate=positive, rule="> 0")
    drift_min_examples: int = field(100, "Predictions needed before drift is judged.",
                                    validate=positive, rule="> 0")
    drain_s: float = field(30.0, "On SIGTERM, how long in-flight requests may still take.",
                           validate=positive, rule="> 0")
