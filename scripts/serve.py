"""Serve exports over TensorFlow Serving's REST API (plus /healthz, /readyz, /metrics).

  python scripts/serve.py --model=banking77=runs/quickstart/export --port=8501
  curl -d '{"instances": ["I lost my card"]}' localhost:8501/v1/models/banking77:predict

  curl -N -d '{"prompt": "ROMEO:", "max_new_tokens": 50}' localhost:8501/v1/models/lm:generate

Each --model dir is one export (served as version 1) or holds version folders <dir>/<n>/;
a new folder moved in while serving is loaded and becomes the default within --poll_s.
Classification and NER exports serve from TFLite (or --format=saved_model); a language
model serves from its train_lm.py run folder, and :generate streams its tokens as
server-sent events.
SIGTERM stops accepting connections, answers every accepted request, then exits.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags, logging

from slm_tf.cli import friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.serving.config import ServeConfig

# --model repeats (one flag per model), so it is declared here before define_flags.
flags.DEFINE_multi_string("model", [], ServeConfig.__dataclass_fields__["model"].metadata["help"])
define_flags(ServeConfig)
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    import gc

    import uvicorn

    from slm_tf.serving.app import create_app
    from slm_tf.serving.metrics import Metrics
    from slm_tf.serving.repository import Repository

    cfg = from_flags(ServeConfig)
    metrics = Metrics()
    repo = Repository(cfg, metrics)  # load before listening: bad exports fail here, clearly
    # TensorFlow and the models leave ~400k long-lived objects: a full garbage collection
    # while serving would walk them all (0.9 s measured on the loaded 2-core machine) and
    # stall every request in flight. Frozen objects are never scanned again.
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(uvicorn.Config(
        create_app(cfg, repo, metrics), host=cfg.host, port=cfg.port, access_log=False,
        log_level="warning", timeout_graceful_shutdown=cfg.drain_s, lifespan="on"))
    logging.info("serving %s on http://%s:%d", ", ".join(repo.models), cfg.host, cfg.port)
    server.run()  # on SIGTERM/SIGINT: drains, then re-raises the signal (exit status 143/130)


if __name__ == "__main__":
    run(main)
