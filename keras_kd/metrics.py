"""The Distiller's own metrics: its logs in one state, and compiled metrics on labelled rows only."""

import keras
import numpy as np
from keras import ops

from keras_kd import _casting, transfer
from keras_kd import positions as kd_positions
from keras_kd.backend import _keras_compat


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationLogs(keras.metrics.Metric):
    """Weighted means of the Distiller's step (the loss, its terms, the teacher agreement) in one metric.

    Every weighted sum and weight lives in one variable, updated with one
    stack and one add per step, where a Keras `Mean` per log would update
    two variables each (docs/results/benchmarks.md measures the step's
    overhead). `result()` returns a dict of all the means.

    The Distiller reports its temperature and alpha beside these means, read
    from its variables (`Distiller.get_metrics_result`).

    Args:
        names: Names of the weighted means.
        name: Name of the metric.
    """

    def __init__(self, names, name="distillation_logs", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.names = tuple(names)
        # The weighted sums, then their weights: summed over replicas under
        # tf.distribute, as a Mean's total and count are.
        self.sums = self.add_variable(shape=(2 * len(self.names),), initializer="zeros", name="sums")

    def update_state(self, means):
        """Adds to the means.

        Args:
            means: A dict from names to `(weighted_sum, weight)`, weights
                >= 0: each mean becomes the sum of all its `weighted_sum`s
                over the sum of all its weights (0 while they sum to 0). A
                name left out adds nothing.
        """
        unknown = sorted(set(means) - set(self.names))
        if unknown:
            raise ValueError(f"Unknown mean names {unknown}; this metric keeps {list(self.names)}.")
        pairs = [means.get(name, (0.0, 0.0)) for name in self.names]
        self.sums.assign_add(_float32_vector([pair[0] for pair in pairs] + [pair[1] for pair in pairs]))

    def reset_state(self):
        self.sums.assign(ops.zeros(self.sums.shape, dtype=self.dtype))

    def result(self):
        sums = _casting.float32(self.sums)
        totals, weights = sums[: len(self.names)], sums[len(self.names) :]
        # 0 where a weight is 0, as a `keras.metrics.Mean` without weight
        # (the `where` drops the division's 0 / 0); NaN and inf in a sum
        # with a weight stay.
        return dict(zip(self.names, ops.unstack(ops.where(weights != 0, totals / weights, 0.0))))

    def get_config(self):
        return {**super().get_config(), "names": list(self.names)}


def _float32_vector(values):
    """A float32 vector of scalars: tensors, then Python numbers (static sizes and counts).

    Numbers after the last tensor join the stacked tensors as one constant;
    numbers among the tensors are stacked with them.
    """
    numbers = [isinstance(value, (int, float)) for value in values]
    tensors = numbers.count(False)
    if any(numbers[:tensors]):
        return ops.stack([_casting.float32(value) for value in values])
    if not tensors:
        return ops.convert_to_tensor(np.asarray(values, "float32"))
    stacked = ops.stack([_casting.float32(value) for value in values[:tensors]])
    if tensors == len(values):
        return stacked
    return ops.concatenate([stacked, np.asarray(values[tensors:], "float32")])


def top1_agreement_count(student_logits, teacher_logits, valid=None):
    """How many positions the student's and the teacher's top-1 classes agree on, as a float32 scalar tensor.

    Args:
        student_logits: Logits whose last axis holds the classes.
        teacher_logits: Logits of the same shape.
        valid: 0/1 per position (the logits' shape less its last axis), or
            None to count every position.
    """
    agreements = ops.cast(ops.argmax(student_logits, axis=-1) == ops.argmax(teacher_logits, axis=-1), "float32")
    return ops.sum(agreements if valid is None else agreements * valid)


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
