"""tensorflow-datasets builders over local files.

``LocalTextClassification`` prepares validated splits (see :mod:`slm_tf.data.sources`) into
TFRecords under ``data_dir`` with typed features, label names and split metadata; a second
run with the same source and options finds the prepared data and reads nothing again.
``LocalTextCorpus`` does the same for raw text (one document per line or paragraph).
"""
import os
from typing import List, Optional

import filelock
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import gcs_utils

from slm_tf.data.readers import Example

# Everything here is local; never let tfds look for metadata on GCS (no network on our machines).
gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access

VERSION = "1.1.0"  # 1.1.0: records kept in source order


def _records(examples: List[Example], with_label: bool):
    for i, ex in enumerate(examples):
        record = {"text": ex.text, "source": ex.source}
        if with_label:
            record["label"] = ex.label
        yield i, record


class _LocalBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared by the local builders: a runtime config named after the source fingerprint and
    splits handed over already validated (abstract, so tfds does not register it)."""

    VERSION = tfds.core.Version(VERSION)
    with_label = False

    def __init__(self, *, config_name: str, description: str = "",
                 splits: Optional[dict] = None, **kwargs):
        self._description = description
        self._splits = splits
        super().__init__(config=tfds.core.BuilderConfig(name=config_name, version=VERSION,
                                                        description=description), **kwargs)

    def _split_generators(self, dl_manager):
        if self._splits is None:
            raise RuntimeError("the source splits are needed to prepare the dataset")
        return {name: self._generate_examples(name) for name, exs in self._splits.items() if exs}

    def _generate_examples(self, split: str):
        return _records(self._splits[split], with_label=self.with_label)


class LocalTextClassification(_LocalBuilder):
    """Labelled local text (CSV/TSV/JSONL/folder or a registered dataset) as a tfds dataset."""

    with_label = True

    def __init__(self, *, label_names: List[str], citation: str = "", **kwargs):
        self._label_names = list(label_names)
        self._citation_text = citation
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self._description,
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=self._label_names),
                "source": tfds.features.Text(),
            }),
            supervised_keys=("text", "label"),
            citation=self._citation_text,
            # Keep the source order: reports line predictions up with texts and sources.
            disable_shuffling=True,
        )


class LocalTextCorpus(_LocalBuilder):
    """Raw domain text (no labels) as a tfds dataset with train/validation splits."""

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self._description,
            features=tfds.features.FeaturesDict({"text": tfds.features.Text(),
                                                 "source": tfds.features.Text()}),
            disable_shuffling=True)


def prepare(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
    """Writes the TFRecords unless this exact source/config is already prepared.

    Processes sharing a ``data_dir`` (a benchmark's arms run side by side, two pipelines on one
    dataset) take turns through a lock file: tfds writes into a temporary folder and renames
    it at the end, and the second of two concurrent renames fails with FileExistsError.
    """
    if builder.info.splits:  # prepared before this builder was made, which read its metadata
        return builder
    lock_dir = os.path.join(os.fspath(builder.data_dir_root), ".slm_tf_locks")
    os.makedirs(lock_dir, exist_ok=True)
    name = f"{builder.name}-{builder.builder_config.name}-{builder.version}.lock"
    with filelock.FileLock(os.path.join(lock_dir, name)):
        if os.path.exists(os.path.join(os.fspath(builder.data_dir), "dataset_info.json")):
            # Prepared by another process since this builder was made: read the metadata it
            # wrote (download_and_prepare would only say "reusing").
            builder.info.read_from_directory(builder.data_dir)
        else:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def data_dir_of(builder: tfds.core.DatasetBuilder) -> str:
    """The folder holding this builder's TFRecords and dataset_info.json."""
    return os.fspath(builder.data_dir)
