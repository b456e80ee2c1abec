"""LoRA / BitFit / freezing (slm_tf.peft.lora): identity at start, only adapters train, merge
equals the unmerged model, adapter files round-trip and refuse another base."""
import numpy as np
import pytest
import tensorflow as tf

from slm_tf.errors import UserError
from slm_tf.models import ModelConfig, build_model
from slm_tf.peft import lora
from slm_tf.peft.config import FineTuneConfig

SEQ = 12


def _model(arch="transformer", seed=0):
    tf.keras.utils.set_random_seed(seed)
    cfg = ModelConfig(model=arch, hidden_dim=16, num_heads=2, ff_dim=32, num_layers=2,
                      dropout=0.0)
    return build_model(cfg, 50, 3, SEQ)


def _ids(n=6, seed=1):
    ids = np.random.RandomState(seed).randint(1, 50, (n, SEQ)).astype("int32")
    ids[:, -3:] = 0  # padding
    return ids


def _train(model, epochs=1):
    import tf_keras as keras
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # 3 steps: tracing a graph would cost more than running
    x, y = _ids(12), np.arange(12) % 3
    model.fit(x, y, epochs=epochs, batch_size=4, verbose=0)


ALL = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]


@pytest.fixture(scope="module")
def trained():
    """A transformer with LoRA on every projection (r=2, alpha=8) + BitFit, trained 3 steps;
    with the weights it had before training and its output on ``_ids()``."""
    model = _model()
    cfg = FineTuneConfig(lora_rank=2, lora_alpha=8.0, lora_targets=ALL, bitfit=True)
    lora.apply(model, cfg, seed=0)
    before = {id(v): v.numpy().copy() for v in model.weights}
    _train(model)
    return model, cfg, before, model(_ids()).numpy()


def test_lora_starts_as_the_base_model_on_bert_and_transformer():
    for arch in ("bert", "transformer"):
        model = _model(arch)
        x = _ids()
        base_out = model(x).numpy()
        paths = lora.apply(model, FineTuneConfig(lora_rank=4, lora_targets=["query", "value",
                                                                            "ffn_in"]), seed=3)
        assert len(paths) == 2 * 3  # 2 blocks x 3 projections
        np.testing.assert_array_equal(model(x).numpy(), base_out)  # B = 0: exactly the base
        # Trainable = adapters (A [16, 4], B [4, out] per projection) + head (16x3 + 3).
        expected = 2 * (2 * (4 * 16 + 4 * 16) + (4 * 16 + 4 * 32)) + 16 * 3 + 3
        assert lora.parameter_report(model)["trainable_params"] == expected


def test_only_adapters_head_and_biases_change_in_training(trained):
    model, _, before, _ = trained
    trainable = {id(v) for v in model.trainable_weights}
    assert len(trainable) < len(model.weights)
    for v in model.weights:
        changed = not np.array_equal(before[id(v)], v.numpy())
        if id(v) in trainable and "lora_a" not in v.name:  # B, the head, biases must move
            assert changed, v.name
        if id(v) not in trainable:
            assert not changed, v.name


def test_adapter_round_trip_and_refuses_another_base(trained, tmp_path):
    model, cfg, _, out = trained
    path = str(tmp_path / lora.ADAPTER_FILE)
    size = lora.save_adapter(model, cfg, path)
    n_trainable = lora.parameter_report(model)["trainable_params"]
    assert size < 4 * n_trainable + 8192  # the adapter alone, not the base
    same_base = _model(seed=0)  # same seed: the same frozen weights
    assert lora.load_adapter(same_base, path).lora_rank == 2
    np.testing.assert_allclose(same_base(_ids()).numpy(), out, atol=1e-6)

    other = _model(seed=1)
    total = sum(w.size for w in other.get_weights())
    with pytest.raises(UserError, match="different base model"):
        lora.load_adapter(other, path)
    assert lora.parameter_report(other)["trainable_params"] == total  # left as it was


def test_merge_equals_unmerged_and_restores_a_plain_model(trained, tmp_path):
    import tf_keras as keras
    model, _, _, unmerged = trained
    n_weights_base = len(_model().weights)
    assert lora.merge(model) == 12
    x = _ids()
    np.testing.assert_allclose(model(x).numpy(), unmerged, atol=1e-5)
    # A plain zoo model again: the same weight list, everything trainable, saves and reloads.
    assert len(model.weights) == len(model.trainable_weights) == n_weights_base
    assert not any(isinstance(layer, lora.LoRADense)
                   for layer in model._flatten_layers(include_self=False))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(again(x).numpy(), unmerged, atol=1e-5)


def test_bitfit_and_freeze_layers_choose_the_right_weights():
    model = _model()
    lora.apply(model, FineTuneConfig(bitfit=True), seed=0)
    names = {v.name.split("/")[-1].split(":")[0] for v in model.trainable_weights}
    assert names == {"bias", "beta", "kernel"}  # kernel: the head's only
    kernels = [v for v in model.trainable_weights if "kernel" in v.name]
    assert [v.name for v in kernels] == ["logits/kernel:0"]

    model = _model()
    lora.apply(model, FineTuneConfig(freeze_layers=1), seed=0)
    frozen = {v.name.split("/")[0] for v in model.non_trainable_weights}
    assert frozen == {"token_embedding", "position_embedding", "block0_attention_norm",
                      "block0_attention", "block0_ffn_norm", "block0_ffn_in", "block0_ffn_out"}
