"""Data: readers for local files, registered datasets, tfds builders and tf.data pipelines."""
