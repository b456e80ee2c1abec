"""``TokenizerConfig``: which tokenizer and vocabulary. TensorFlow-free, so scripts define and
check their flags before TensorFlow loads."""
import dataclasses

from slm_tf.config import field, positive

# The registered tokenizers (slm_tf.tokenizers.registry.TOKENIZERS), listed here because the
# registry loads TensorFlow; the registry refuses a name missing here and checks all are there.
TOKENIZER_NAMES = ("wordpiece", "char", "char_exact", "sentencepiece")


@dataclasses.dataclass
class TokenizerConfig:
    tokenizer: str = field("wordpiece", "wordpiece (learned from the training split, or from "
                           "--vocab_file), char (one token per character, for CJK text), or "
                           "the reversible ones language models need: char_exact (every "
                           "character, case and whitespace kept) and sentencepiece (subwords).",
                           choices=TOKENIZER_NAMES)
    vocab_file: str = field("", "An existing WordPiece vocab.txt (e.g. a BERT checkpoint's); "
                            "skips learning a vocabulary.")
    vocab_size: int = field(8000, "Vocabulary size to learn (upper bound).", validate=positive,
                            rule="> 0")
    min_frequency: int = field(2, "Ignore words (wordpiece) or characters (char) seen fewer "
                               "times in the training split when learning the vocabulary.",
                               validate=positive, rule="> 0")
    word_boundaries: bool = field(False, "char: one [SPACE] token between words, so character "
                                  "n-grams see where words start and end (the tfidf model's "
                                  "char_wb n-grams).")
    lowercase: bool = field(True, "Lower-case text before tokenizing.")
    strip_accents: bool = field(True, "Drop combining accents (Unicode NFD) before tokenizing.")
