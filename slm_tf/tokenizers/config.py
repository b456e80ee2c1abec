"""``TokenizerConfig``: which tokenizer and vocabulary. TensorFlow-free, so scripts define and
check their flags before TensorFlow loads."""
import dataclasses

from slm_tf.config import field, positive


@dataclasses.dataclass
class TokenizerConfig:
    tokenizer: str = field("wordpiece", "wordpiece (learned from the training split, or from "
                           "--vocab_file), char (one token per character, for CJK text), or "
                           "the reversible ones language models need: char_exact (every "
                           "character, case and whitespace kept) and sentencepiece (subwords).",
                           choices=("wordpiece", "char", "char_exact", "sentencepiece"))
    vocab_file: str = field("", "An existing WordPiece vocab.txt (e.g. a BERT checkpoint's); "
                            "skips learning a vocabulary.")
    vocab_size: int = field(8000, "Vocabulary size to learn (upper bound).", validate=positive,
                            rule="> 0")
    min_frequency: int = field(2, "Ignore words (wordpiece) or characters (char) seen fewer "
                               "times in the training split when learning the vocabulary.",
                               validate=positive, rule="> 0")
    lowercase: bool = field(True, "Lower-case text before tokenizing.")
    strip_accents: bool = field(True, "Drop combining accents (Unicode NFD) before tokenizing.")
