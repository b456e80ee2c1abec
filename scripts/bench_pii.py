"""Benchmark: PII redaction recall and false changes on banking77 test texts.

  python scripts/bench_pii.py --output=runs/bench_pii.json [--per_type=100 --per_kind=80 --seed=0]

Embeds ``per_type`` seeded PII strings of each type (valid checksums, common print formats) in
banking77 test texts and measures recall per type and format; counts how many of the 3,080
untouched test texts and of ``per_kind`` non-PII look-alikes per kind (amounts, dates, times,
order numbers, versions, 16-digit numbers failing Luhn, IBANs failing mod 97, Chinese IDs with a
wrong check character) the redactor changes.
"""
import csv
import os

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.data.sources import EMBEDDED_DIR
from slm_tf.io_utils import write_json
from slm_tf.trust.pii_bench import score

flags.DEFINE_string("output", "runs/bench_pii.json", "Where the JSON result goes.")
flags.DEFINE_integer("per_type", 100, "PII strings per type.")
flags.DEFINE_integer("per_kind", 80, "Non-PII look-alikes per kind.")
flags.DEFINE_integer("seed", 0, "Seed of the generator.")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    del argv
    with open(os.path.join(EMBEDDED_DIR, "banking77", "test.csv"), encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    result = score(texts, FLAGS.per_type, FLAGS.per_kind, FLAGS.seed)
    result["command"] = (f"python scripts/bench_pii.py --per_type={FLAGS.per_type} "
                         f"--per_kind={FLAGS.per_kind} --seed={FLAGS.seed}")
    write_json(FLAGS.output, result)
    print_table([[k, f"{v:.4f}"] for k, v in result["recall_per_format"].items()],
                ["format", "recall"])
    print(f"\nrecall {result['recall']:.4f} over {result['pii_strings']} PII strings; "
          f"false-change rate {result['false_change_rate']:.4f} over "
          f"{result['untouched_texts']} texts + {result['lookalikes']} look-alikes "
          f"({result['untouched_changed']} texts changed, look-alikes changed: "
          f"{result['lookalikes_changed_per_kind']})\n{FLAGS.output}")


if __name__ == "__main__":
    run(main)
