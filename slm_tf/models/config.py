"""``ModelConfig``: which zoo architecture and its sizes. TensorFlow-free, so scripts define
and check their flags before TensorFlow loads."""
import dataclasses

from slm_tf.config import field, non_negative, positive

# tfidf's hashed n-gram counters: its n-gram hash takes 65,521 values (slm_tf.models.tfidf).
TFIDF_MAX_BUCKETS = 65536
POOLINGS = ("mean", "max", "cls", "mean_max", "mean_unit", "sqrt_n")
# The zoo's architectures (slm_tf.models.zoo.MODELS), listed here because the zoo loads
# TensorFlow; the registry refuses a name missing here and checks all are registered.
MODEL_NAMES = ("transformer", "cnn", "bilstm", "bigru", "bow", "tfidf", "bert", "gpt",
               "lstm_lm", "gru_lm")


@dataclasses.dataclass
class ModelConfig:
    model: str = field("cnn", "Architecture from the model zoo (gpt, lstm_lm and gru_lm are "
                       "causal language models).",
                       choices=MODEL_NAMES)
    embedding_dim: int = field(128, "Token embedding width (cnn, bilstm, bigru, bow).",
                               validate=positive, rule="> 0")
    hidden_dim: int = field(128, "Transformer width / recurrent units per direction / bow and "
                            "cnn hidden layer (0 = none for cnn).", validate=non_negative,
                            rule=">= 0")
    num_layers: int = field(2, "Transformer blocks or stacked recurrent layers.",
                            validate=positive, rule="> 0")
    num_heads: int = field(4, "Attention heads (transformer).", validate=positive, rule="> 0")
    ff_dim: int = field(256, "Feed-forward width (transformer).", validate=positive, rule="> 0")
    pooling: str = field("auto", "How token states become one vector; auto picks the "
                         "architecture's usual choice.", choices=("auto",) + POOLINGS)
    dropout: float = field(0.1, "Dropout rate.", validate=lambda x: 0.0 <= x < 1.0,
                           rule="in [0, 1)")
    kernel_sizes: list = field(["3", "4", "5"], "Convolution widths (cnn).")
    num_filters: int = field(128, "Filters per convolution width (cnn).", validate=positive,
                             rule="> 0")
    layer_norm_eps: float = field(1e-6, "LayerNormalization epsilon (transformer, bert; a "
                                  "checkpoint's config.json overrides it).", validate=positive,
                                  rule="> 0")
    dilations: list = field([], "Token classification with cnn: dilated width-3 convolutions "
                            "stacked after the parallel ones, one per rate (e.g. 1,2,4).")
    bigram_buckets: int = field(0, "Hashed embeddings of each token and its left neighbour "
                                "(character bigrams for Chinese) in this many buckets: "
                                "averaged with the token embeddings (bow) or concatenated to "
                                "them (token classification with cnn); 0 = off.",
                                validate=non_negative, rule=">= 0")
    trigram_buckets: int = field(0, "bow: hashed embeddings of each token and its two left "
                                 "neighbours (character trigrams for Chinese) in a table of "
                                 "this many rows of their own, pooled with the token and "
                                 "bigram embeddings; 0 = off.", validate=non_negative,
                                 rule=">= 0")
    tfidf_buckets: int = field(65536, "tfidf: hashed n-gram counters (the model has this many "
                               "x classes weights).", validate=lambda x: 0 < x <= TFIDF_MAX_BUCKETS,
                               rule=f"in [1, {TFIDF_MAX_BUCKETS}]")
    ngram_orders: list = field(["2", "3", "4", "5"], "tfidf: n-gram lengths in tokens (with "
                               "--tokenizer=char --word_boundaries: characters within words, "
                               "scikit-learn's char_wb).")
    boundary_ids: list = field([], "tfidf: token ids n-grams do not cross; set from the "
                               "tokenizer ([SPACE], [CLS], [SEP]) when the model is built.")
    rnn_units: int = field(0, "Token classification with cnn: a bidirectional GRU of this "
                           "many units per direction over the convolution states, for "
                           "sentence-wide context (0 = off).", validate=non_negative,
                           rule=">= 0")
    crf: bool = field(False, "Token classification: a CRF layer over the per-token logits "
                      "(transition scores, Viterbi decoding).")
    init_checkpoint: str = field("", "A local BERT-family checkpoint directory (config.json, "
                                 "model.safetensors, vocab.txt) to start from (model=bert).")
    init_embeddings_from: str = field("", "Start the token embeddings from a larger model's: "
                                      "teacher (distill.py and the pipeline's students), a run "
                                      "directory or a BERT checkpoint directory (pip:<package> "
                                      "too). Each token takes the source rows of its pieces, "
                                      "averaged, reduced by PCA to --embedding_dim (empty = "
                                      "random start).")
    freeze_embeddings: bool = field(False, "Keep the token embeddings as they start (with "
                                    "--init_embeddings_from: words the training data never "
                                    "shows stay in the same space as the ones it does).")
