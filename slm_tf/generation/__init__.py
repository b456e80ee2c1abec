"""Text generation from the causal LMs: greedy or sampled decoding with the incremental
``step`` of the model (Transformer key/value cache, recurrent state), so the prefix is never
recomputed. The sampling settings and filters import without TensorFlow, so scripts parse their
flags (and filter TensorFlow's start-up notices) first; ``generate`` and ``decoding_speed``
load :mod:`slm_tf.generation.decode` (TensorFlow) on first use."""
from slm_tf.generation.sampling import (SamplingConfig, apply_repetition_penalty, choose_tokens,
                                        filter_top_k, filter_top_p)
from slm_tf.lazy import forward_to

__all__ = ["SamplingConfig", "apply_repetition_penalty", "choose_tokens", "filter_top_k",
           "filter_top_p", "generate"]

__getattr__ = forward_to(__name__, "slm_tf.generation.decode")
