"""Text generation from the causal LMs: greedy or sampled decoding with the incremental
``step`` of the model (Transformer key/value cache, recurrent state), so the prefix is never
recomputed."""
from slm_tf.generation.sampling import (SamplingConfig, apply_repetition_penalty, choose_tokens,
                                        filter_top_k, filter_top_p)
from slm_tf.generation.generate import generate

__all__ = ["SamplingConfig", "apply_repetition_penalty", "choose_tokens", "filter_top_k",
           "filter_top_p", "generate"]
