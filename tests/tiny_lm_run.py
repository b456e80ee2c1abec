"""A small untrained but complete language-model run directory (what train_lm.py writes at
the end), for export, bundle and client tests."""
import os

CORPUS = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to "
          "suffer\nThe slings and arrows of outrageous fortune,\nOr to take arms against a "
          "sea of troubles\n") * 3


def make_lm_run(run_dir, data_dir, arch="gpt", context=24):
    """Writes ``run_dir`` for a tiny untrained ``arch`` LM (char_exact) over a toy corpus
    folder next to it (two documents: train and test); returns the corpus folder."""
    from slm_tf.data.config import DataConfig
    from slm_tf.io_utils import write_json, write_text
    from slm_tf.models import ModelConfig, build_model
    from slm_tf.tokenizers import TokenizerConfig, build_tokenizer
    from slm_tf.train import artifacts
    from slm_tf.train.trainer import ExperimentConfig, TrainConfig

    corpus = os.path.join(os.path.dirname(run_dir), "corpus")
    os.makedirs(corpus, exist_ok=True)
    for name, text in (("a.txt", CORPUS), ("b.txt", CORPUS[::-1]), ("c.txt", CORPUS[50:])):
        write_text(os.path.join(corpus, name), text)
    exp = ExperimentConfig(
        DataConfig(data=corpus, data_dir=data_dir, max_seq_len=context, test_data="b.txt",
                   validation_data="c.txt"),
        TokenizerConfig(tokenizer="char_exact", min_frequency=1, vocab_size=1000),
        ModelConfig(model=arch, hidden_dim=16, embedding_dim=16, num_layers=2, num_heads=2,
                    ff_dim=32, dropout=0.0),
        TrainConfig(output_dir=run_dir, epochs=1, task="lm"))
    os.makedirs(run_dir, exist_ok=True)
    tokenizer = build_tokenizer(exp.tokenizer, [CORPUS])
    tokenizer.save(os.path.join(run_dir, artifacts.TOKENIZER_DIR))
    model = build_model(exp.model, tokenizer.vocab_size, tokenizer.vocab_size, context)
    artifacts.save_model(run_dir, model, tokenizer, context)
    write_json(os.path.join(run_dir, artifacts.CONFIG_FILE), exp.to_dict())
    write_json(os.path.join(run_dir, artifacts.METRICS_FILE), {"bits_per_character": 0.0})
    return corpus
