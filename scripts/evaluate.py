"""Evaluate a saved run on any split of a registered dataset or any labelled file.

  python scripts/evaluate.py --run_dir=runs/x --data=banking77 --split=test
  python scripts/evaluate.py --run_dir=runs/x --data=new.csv --text_column=text --label_column=label

A file that is not the run's training data is scored whole (--split=all); the training data
is scored on the run's own test split.

Writes ``<run_dir>/eval/<data>_<split>.json`` and TensorBoard summaries under
``<run_dir>/logs/eval_<data>_<split>``.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.config import define_flags, from_flags
from slm_tf.data.config import AUTO, EVAL_SPLITS, DataConfig

define_flags(DataConfig)
flags.DEFINE_string("run_dir", None, "The --output_dir of a finished train.py run.")
flags.DEFINE_enum("split", AUTO, list(EVAL_SPLITS), "Which rows of --data to score: all of "
                  "them, or its train/validation/test split (split as in training). auto = "
                  "the run's test split when --data is the run's training data, else all.")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    from slm_tf.evaluation import evaluate_run  # TensorFlow loads here, after the flags
    r = evaluate_run(FLAGS.run_dir, from_flags(DataConfig), FLAGS.split)
    if "entity_f1" in r:  # token classification (--task=ner runs)
        print_table([[r["data"]["name"], r["split"], r["num_examples"], f"{r['entity_f1']:.4f}",
                      f"{r['precision']:.4f}", f"{r['recall']:.4f}",
                      f"{r['token_accuracy']:.4f}", r["data"]["skipped_rows_total"]]],
                    ["data", "split", "sentences", "entity F1", "precision", "recall",
                     "token accuracy", "skipped rows"])
        return
    if "bits_per_character" in r:  # a language model
        print_table([[r["data"]["name"], r["split"], r["tokens"],
                      f"{r['bits_per_character']:.4f}", f"{r['perplexity']:.2f}",
                      f"{r['accuracy']:.4f}"]],
                    ["data", "split", "tokens", "bits/char", "perplexity", "next-token acc"])
        return
    print_table([[r["data"]["name"], r["split"], r["num_examples"], f"{r['accuracy']:.4f}",
                  f"{r['macro_f1']:.4f}", f"{r['ece']:.4f}", r["data"]["skipped_rows_total"]]],
                ["data", "split", "examples", "accuracy", "macro-F1", "ECE", "skipped rows"])


if __name__ == "__main__":
    run(main)
