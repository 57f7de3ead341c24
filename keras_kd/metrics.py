"""The Distiller's own metrics: its logs in one state, and compiled metrics on labelled rows only."""

import keras
from keras import ops

from keras_kd import _casting, transfer
from keras_kd import positions as kd_positions
from keras_kd.backend import _keras_compat


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationLogs(keras.metrics.Metric):
    """Every log of the Distiller's step in one metric, updated in a few ops.

    Weighted means (the loss, its terms, the teacher agreement) and current
    values (the temperature and alpha: the last value given). A Keras `Mean`
    per log costs a handful of small ops at every step; on an eager backend
    (torch) with a step of a few milliseconds, six of them cost a tenth of
    the step. `result()` returns a dict of all the logs.

    Args:
        mean_names: Names of the weighted means.
        current_names: Names of the values reported as last given.
        name: Name of the metric.
    """

    def __init__(self, mean_names, current_names=(), name="distillation_logs", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.mean_names = tuple(mean_names)
        self.current_names = tuple(current_names)
        # The weighted sums, then their weights: summed over replicas under
        # tf.distribute, as a Mean's total and count are.
        self.sums = self.add_variable(shape=(2 * len(self.mean_names),), initializer="zeros", name="sums")
        # Every replica assigns the same values: averaged, not summed.
        self.currents = self.add_variable(
            shape=(len(self.current_names),), initializer="zeros", aggregation="mean", name="currents"
        )

    def update_state(self, means, currents=None):
        """Adds to the means and sets the current values.

        Args:
            means: A dict from mean names to `(weighted_sum, weight)`:
                the mean becomes the sum of all `weighted_sum`s given over
                the sum of all `weight`s. A name left out adds nothing.
            currents: A dict from current-value names to their values, or
                None to leave them as they are.
        """
        for names, given, kind in ((self.mean_names, means, "mean"), (self.current_names, currents or {}, "value")):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise ValueError(f"Unknown {kind} names {unknown}; this metric keeps {list(names)}.")
        zero = (0.0, 0.0)
        pairs = [means.get(name, zero) for name in self.mean_names]
        increment = ops.concatenate([_vector([pair[0] for pair in pairs]), _vector([pair[1] for pair in pairs])])
        self.sums.assign_add(increment)
        if currents is not None and self.current_names:
            self.currents.assign(_vector([currents[name] for name in self.current_names]))

    def reset_state(self):
        # The current values stay meaningful across epochs.
        self.sums.assign(ops.zeros(self.sums.shape, dtype=self.dtype))

    def result(self):
        count = len(self.mean_names)
        sums = ops.convert_to_tensor(self.sums)
        values = ops.divide_no_nan(sums[:count], sums[count:])
        if self.current_names:
            values = ops.concatenate([values, ops.convert_to_tensor(self.currents)])
        return dict(zip(self.mean_names + self.current_names, ops.unstack(values)))

    def get_config(self):
        return {
            **super().get_config(),
            "mean_names": list(self.mean_names),
            "current_names": list(self.current_names),
        }


def _vector(values):
    """A float32 vector of scalars; Python numbers (static sizes and counts) make one constant."""
    if all(isinstance(value, (int, float)) for value in values):
        return ops.convert_to_tensor(values, dtype="float32")
    return ops.stack([_casting.float32(value) for value in values])


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
