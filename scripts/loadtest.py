"""Load-test a local server (scripts/serve.py): throughput, latency percentiles and errors.

  python scripts/loadtest.py --url=http://127.0.0.1:8501 --model=banking77 \
      --concurrency=32 --duration_s=30 --output=loadtest.json

Bounded by --duration_s and --max_requests; refuses any host that is not loopback.
"""
import json

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)

from slm_tf.cli import friendly_errors, run
from slm_tf.config import define_flags, from_flags
from slm_tf.io_utils import write_json
from slm_tf.serving.loadtest import LoadTestConfig, run_load

define_flags(LoadTestConfig)


@friendly_errors
def main(argv):
    cfg = from_flags(LoadTestConfig)
    report = run_load(cfg)
    if cfg.output:
        write_json(cfg.output, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    run(main)
