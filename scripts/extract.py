"""Print the named entities a --task=ner run finds in raw text, with character offsets.

  python scripts/extract.py --run_dir=runs/ner --text="Ann Lee flew to Paris."
  python scripts/extract.py --run_dir=runs/ner --input=texts.jsonl --output=entities.jsonl

Every output line is a JSON object ``{"text": ..., "entities": [{"start", "end", "type",
"text"}]}`` (offsets into that text, end exclusive); ``--input`` is JSONL (``--text_key``) or
plain text, one text per line.
"""
import slm_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
from absl import flags

from slm_tf.cli import friendly_errors, run

flags.DEFINE_string("run_dir", None, "The --output_dir of a finished train.py --task=ner run.")
flags.DEFINE_multi_string("text", [], "A text to tag (repeat the flag for more).")
flags.DEFINE_string("input", "", "A .jsonl (one object with --text_key per line) or a plain "
                    "text file (one text per line).")
flags.DEFINE_string("text_key", "text", "JSON key holding the text in --input.")
flags.DEFINE_string("output", "", "Write JSONL here (atomically) instead of printing it.")
flags.mark_flag_as_required("run_dir")
FLAGS = flags.FLAGS


@friendly_errors
def main(argv):
    import json

    from slm_tf.errors import UserError
    from slm_tf.io_utils import write_text
    from slm_tf.ner.extract import extract_entities, read_texts
    from slm_tf.train.artifacts import load_run

    texts = list(FLAGS.text) + ([t for _, t in read_texts(FLAGS.input, FLAGS.text_key)]
                                if FLAGS.input else [])
    if not texts:
        raise UserError("nothing to tag. Fix: pass --text=\"...\" or --input=<file>")
    entities = extract_entities(load_run(FLAGS.run_dir), texts)
    lines = "".join(json.dumps({"text": t, "entities": e}, ensure_ascii=False) + "\n"
                    for t, e in zip(texts, entities))
    if FLAGS.output:
        write_text(FLAGS.output, lines)
        print(f"{len(texts)} texts, {sum(map(len, entities))} entities: {FLAGS.output}")
    else:
        print(lines, end="")


if __name__ == "__main__":
    run(main)
