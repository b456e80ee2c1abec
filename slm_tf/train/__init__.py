"""Training: optimizer, callbacks, metrics, TensorBoard summaries, run artifacts, the trainer."""
