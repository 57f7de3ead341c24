"""The Distiller's own metrics: the current T and alpha, and compiled metrics on labelled rows only."""

import keras
from keras import ops

from keras_kd import positions as kd_positions
from keras_kd import transfer
from keras_kd.backend import _keras_compat


@keras.saving.register_keras_serializable(package="keras_kd")
class CurrentValue(keras.metrics.Metric):
    """A metric that reports the last value given to it (for T and alpha)."""

    def __init__(self, name, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        # Every replica assigns the same value; the default "sum" would
        # report it times the number of replicas under tf.distribute.
        self.value = self.add_variable(shape=(), initializer="zeros", aggregation="mean", name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def reset_state(self):
        pass  # The last value stays meaningful across epochs.

    def result(self):
        return ops.convert_to_tensor(self.value)


def update_compiled_metrics(compile_metrics, labels, logits, positions):
    """Updates `compile(metrics=..., weighted_metrics=...)` on labelled, valid positions only.

    Keras applies `sample_weight` to `weighted_metrics` alone; the positions
    marked unlabelled, masked or padded must leave out of both kinds, so
    each kind gets the label mask times the valid positions (times the
    sample weights for the weighted kind). `positions` is the
    `keras_kd.positions.Positions` of `logits`.
    """
    if not compile_metrics.built:
        compile_metrics.build(labels, logits)
    labeled = kd_positions.labeled_positions(labels, logits)
    labels = transfer.fill_missing_labels(labels)
    plain = labeled if positions.valid is None else labeled * positions.valid
    weighted = labeled if positions.weights is None else labeled * positions.weights
    plain_metrics, weighted_metrics = _keras_compat.flat_compile_metrics(compile_metrics)
    for metrics, weights in ((plain_metrics, plain), (weighted_metrics, weighted)):
        for metric in metrics:
            if metric:
                metric.update_state(labels, logits, sample_weight=weights)
