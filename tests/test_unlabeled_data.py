"""--unlabeled_data (distill.py, and the pipeline's distilled stage, which passes it on): a
registered dataset's training texts, or a text file's lines."""
import csv
import os

from slm_tf.data.config import DataConfig
from slm_tf.data.sources import EMBEDDED_DIR
from slm_tf.distill.config import DistillConfig
from slm_tf.data.unlabeled import unlabeled_texts


def test_a_registered_dataset_gives_its_training_texts():
    texts = unlabeled_texts(DistillConfig(unlabeled_data="banking77"),
                            DataConfig(data="clinc150_oos"))
    with open(os.path.join(EMBEDDED_DIR, "banking77", "train.csv"), encoding="utf-8") as f:
        rows = [r["text"] for r in csv.DictReader(f)]
    # The training split (validation carved out of the 10,003 rows), nothing else, none empty.
    assert set(texts) <= set(rows) and 8500 < len(texts) < len(rows) and all(texts)
    capped = unlabeled_texts(DistillConfig(unlabeled_data="banking77", max_unlabeled=7),
                             DataConfig())
    assert capped == texts[:7]


def test_a_text_file_gives_one_text_per_line(tmp_path):
    path = tmp_path / "domain.txt"
    path.write_text("how do i top up\n\nmy card has not arrived\n", encoding="utf-8")
    assert unlabeled_texts(DistillConfig(unlabeled_data=str(path)), DataConfig()) == [
        "how do i top up", "my card has not arrived"]

