"""Unlabeled text a run adds to its labelled data (``--unlabeled_data`` of distill.py, the
pipeline and pretrain.py): a registered dataset's training texts, or a text corpus's documents."""
import os
from typing import List

from slm_tf.data.config import DataConfig
from slm_tf.data.readers import read_corpus
from slm_tf.data.sources import DATASETS, load_splits
from slm_tf.errors import UserError


def check_unlabeled_source(source: str) -> None:
    """A UserError unless ``source`` is an existing path or a registered dataset."""
    if source and not os.path.exists(source) and source not in DATASETS.names():
        raise UserError(f"{source}: no such file, folder or registered dataset. Fix: check "
                        "--unlabeled_data (a .txt file, a folder of them, or one of "
                        f"{', '.join(DATASETS.names())}).")


def unlabeled_texts(cfg, data_cfg: DataConfig) -> List[str]:
    """``cfg.unlabeled_data``'s texts (at most ``cfg.max_unlabeled``, one per
    ``cfg.unlabeled_unit`` of a text file): a registered dataset's training texts (e.g.
    banking77's queries), or the documents of a .txt file or folder."""
    check_unlabeled_source(cfg.unlabeled_data)
    if cfg.unlabeled_data in DATASETS.names():
        texts = [e.text for e in load_splits(DataConfig(
            data=cfg.unlabeled_data, data_root=data_cfg.data_root,
            on_bad_row=data_cfg.on_bad_row)).train]
    else:
        texts = [d.text for d in read_corpus(cfg.unlabeled_data, cfg.unlabeled_unit,
                                             data_cfg.on_bad_row).examples]
    return texts[:cfg.max_unlabeled]
