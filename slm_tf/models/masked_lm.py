"""The masked-LM model: a zoo encoder with a BERT-style head (Dense + GELU, LayerNorm, a
vocabulary projection) whose training and evaluation project only the chosen positions."""
from typing import Tuple

import tensorflow as tf
import tf_keras as keras

HEAD_LAYERS = ("mlm_transform", "mlm_norm", "mlm_logits")
_ENCODER = "_slm_tf_mlm_encoder"  # the cached states sub-model, kept out of Keras tracking


def chosen_logits(model: keras.Model, ids, weights,
                  training: bool = False) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(logits [N, V], index [N, 2])`` of the N positions of ``ids`` [B, L] whose weight is
    positive, through the head layers of any masked-LM graph (old runs' plain models too)."""
    encoder = model.__dict__.get(_ENCODER)
    if encoder is None:
        encoder = keras.Model(model.inputs, model.get_layer(HEAD_LAYERS[0]).input)
        model.__dict__[_ENCODER] = encoder
    index = tf.where(weights > 0)
    # [1, N, D]: the head's LayerNorm was built on rank-3 states.
    h = tf.gather_nd(encoder(ids, training=training), index)[tf.newaxis]
    for name in HEAD_LAYERS:
        h = model.get_layer(name)(h, training=training)
    return h[0], index


@keras.saving.register_keras_serializable(package="slm_tf")
class MaskedLM(keras.Model):
    """Called: ids [B, L] -> logits [B, L, V] (fill-mask serving). ``fit``/``evaluate`` take
    ``(ids, targets, weights)`` and score only the positions with weight > 0: the projection of
    all L positions onto the vocabulary is most of a small encoder's cost (a CNN student with
    5,000 word pieces and 128 channels: about 8 times its encoder's), and the others' loss is
    zero anyway."""

    def _scored(self, data, training: bool):
        ids, targets, weights = data
        logits, index = chosen_logits(self, ids, weights, training)
        # Each chosen position keeps the weight it had in the mean over all B * L positions
        # (the loss scale the recipes' learning rates and clipping were tuned with). A leading
        # axis of 1 makes Keras average the batches' losses with equal weights, as it did
        # when every batch had B rows, rather than by their number of chosen positions.
        # Metrics (masked-token accuracy) weigh every chosen position alike, as before.
        scale = tf.cast(tf.shape(index)[0], tf.float32) / tf.cast(tf.size(weights), tf.float32)
        weights = tf.gather_nd(weights, index)[tf.newaxis]
        return (tf.gather_nd(targets, index)[tf.newaxis], logits[tf.newaxis], weights * scale,
                weights)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            targets, logits, loss_weights, weights = self._scored(data, training=True)
            loss = self.compiled_loss(targets, logits, loss_weights,
                                      regularization_losses=self.losses)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self.compute_metrics(None, targets, logits, weights)

    def test_step(self, data):
        targets, logits, loss_weights, weights = self._scored(data, training=False)
        self.compiled_loss(targets, logits, loss_weights, regularization_losses=self.losses)
        return self.compute_metrics(None, targets, logits, weights)
