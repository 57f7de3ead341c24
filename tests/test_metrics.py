"""`keras_kd.metrics.DistillationLogs`: the Distiller's logs in one metric."""

import keras
import numpy as np
import pytest

from keras_kd.metrics import DistillationLogs, top1_agreement_count


def _values(logs):
    return {name: float(keras.ops.convert_to_numpy(value)) for name, value in logs.result().items()}


def test_means_are_what_separate_metrics_would_report():
    logs = DistillationLogs(["loss", "agreement"])
    mean = keras.metrics.Mean()
    for loss, batch in ((2.0, 4), (5.0, 2)):
        logs.update_state({"loss": (loss * batch, batch), "agreement": (3.0, 4.0)})
        mean.update_state(loss, sample_weight=batch)
    assert _values(logs) == pytest.approx({"loss": float(mean.result()), "agreement": 0.75})
    # A name left out adds nothing.
    logs.update_state({"loss": (0.0, 6)})
    assert _values(logs) == pytest.approx({"loss": 18.0 / 12.0, "agreement": 0.75})


@pytest.mark.parametrize(
    "kinds",
    [
        {"a": "nn", "b": "nn"},  # Python numbers only: one constant.
        {"a": "tn", "b": "tn"},  # Tensors, then numbers: a stack and a constant.
        {"a": "tt", "b": "tt"},  # Tensors only.
        {"a": "nt", "b": "tn"},  # Mixed in any order.
    ],
)
def test_tensors_and_numbers_in_any_order_give_the_same_means(kinds):
    values = {"a": (6.0, 3.0), "b": (2.0, 4.0)}
    given = {
        name: tuple(
            keras.ops.convert_to_tensor(np.float32(number)) if kind == "t" else number
            for kind, number in zip(kinds[name], values[name])
        )
        for name in values
    }
    logs = DistillationLogs(["a", "b"])
    logs.update_state(given)
    logs.update_state({"b": values["b"]})
    assert _values(logs) == pytest.approx({"a": 2.0, "b": 0.5})


def test_reset_clears_the_means():
    logs = DistillationLogs(["loss"])
    logs.update_state({"loss": (8.0, 4)})
    logs.reset_state()
    # A mean without any weight is 0, as for keras.metrics.Mean.
    assert _values(logs) == {"loss": 0.0}


def test_a_mean_of_no_weight_is_0_whatever_its_sum():
    logs = DistillationLogs(["loss", "agreement"])
    logs.update_state({"loss": (5.0, 0.0), "agreement": (keras.ops.convert_to_tensor(np.float32(3.0)), 4.0)})
    assert _values(logs) == {"loss": 0.0, "agreement": 0.75}


def test_a_nan_or_inf_sum_with_a_weight_stays_in_its_mean():
    logs = DistillationLogs(["loss", "agreement"])
    logs.update_state({"loss": (float("nan"), 2.0), "agreement": (float("inf"), 4.0)})
    means = _values(logs)
    assert np.isnan(means["loss"]) and means["agreement"] == float("inf")


def test_the_top1_agreement_counts_the_valid_positions_whose_argmax_agree():
    student = keras.ops.convert_to_tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]])
    teacher = keras.ops.convert_to_tensor([[0.0, 2.0], [1.0, 0.0], [1.0, 0.0]])
    assert float(keras.ops.convert_to_numpy(top1_agreement_count(student, teacher))) == 2.0
    valid = keras.ops.convert_to_tensor([1.0, 0.0, 1.0])
    assert float(keras.ops.convert_to_numpy(top1_agreement_count(student, teacher, valid))) == 1.0


def test_unknown_names_are_refused_with_the_names_it_keeps():
    logs = DistillationLogs(["loss"])
    with pytest.raises(ValueError, match=r"Unknown mean names \['lost'\]; this metric keeps \['loss'\]"):
        logs.update_state({"lost": (1.0, 1.0)})


def test_tensors_of_other_dtypes_are_cast():
    logs = DistillationLogs(["loss"])
    logs.update_state({"loss": (keras.ops.convert_to_tensor(np.float16(6.0)), keras.ops.convert_to_tensor(3))})
    assert _values(logs) == {"loss": pytest.approx(2.0)}


def test_the_distillers_logs_keep_loss_first():
    from conftest import make_data, make_mlp
    from keras_kd import Distiller

    x, y = make_data(rows=16)
    distiller = Distiller(make_mlp(8), make_mlp(4), temperature=3.0, alpha=0.5).compile(optimizer="sgd")
    history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert history["temperature"] == pytest.approx([3.0, 3.0]) and history["alpha"] == pytest.approx([0.5, 0.5])
    evaluated = distiller.evaluate(x, y, batch_size=8, verbose=0)
    assert evaluated[0] == pytest.approx(distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)["loss"])
    assert [metric.name for metric in distiller.metrics] == ["loss"]


def test_logs_kept_by_a_callback_stay_readable_and_unchanged_after_later_steps():
    # JAX donates the variables' buffers to the next jitted step (validation
    # runs one at each epoch's end): logs kept as arrays must be copies.
    from conftest import make_data, make_mlp
    from keras_kd import Distiller

    kept = []

    class KeepLogs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            kept.append(dict(logs))

        def on_epoch_end(self, epoch, logs=None):
            kept.append(dict(logs))

    x, y = make_data(rows=16)
    distiller = Distiller(make_mlp(8), make_mlp(4), temperature=3.0, alpha=0.5).compile(optimizer="sgd")
    fit = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y), callbacks=[KeepLogs()])
    history = fit.history
    distiller.temperature.assign(5.0)
    # Two steps and the epoch's end, twice, all at T = 3.
    assert [float(keras.ops.convert_to_numpy(logs["temperature"])) for logs in kept] == pytest.approx([3.0] * 6)
    assert [float(keras.ops.convert_to_numpy(value)) for value in history["temperature"]] == pytest.approx([3.0] * 2)


def test_the_logs_read_after_the_epoch_equal_the_ones_its_step_returned():
    # Keras reads the logs again after the epoch, outside the (compiled)
    # step. One step an epoch: both must be that step's means.
    from conftest import make_data, make_mlp
    from keras_kd import Distiller

    seen = {"step": [], "epoch": []}

    class KeepLogs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen["step"].append(dict(logs))

        def on_epoch_end(self, epoch, logs=None):
            seen["epoch"].append(dict(logs))

    x, y = make_data(rows=8)
    distiller = Distiller(make_mlp(8), make_mlp(4), temperature=3.0, alpha=0.5).compile(
        optimizer="sgd", metrics=["accuracy"]
    )
    distiller.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[KeepLogs()])
    names = ["loss", "distillation_loss", "student_loss", "teacher_agreement", "accuracy", "temperature", "alpha"]
    for step, epoch in zip(seen["step"], seen["epoch"]):
        assert sorted(step) == sorted(epoch) == sorted(names)
        assert [epoch[name] for name in names] == pytest.approx([step[name] for name in names], rel=1e-6)
    assert len(seen["epoch"]) == 2 and seen["epoch"][0]["loss"] != seen["epoch"][1]["loss"]


def test_a_nan_sum_with_a_weight_stays_nan():
    logs = DistillationLogs(["loss", "agreement"])
    logs.update_state({"loss": (float("nan"), 2.0), "agreement": (1.0, 2.0)})
    values = _values(logs)
    assert np.isnan(values["loss"]) and values["agreement"] == 0.5


def test_updates_inside_a_stateless_scope_are_recorded_not_made():
    # The torch backend adds to the variable in place: not under a scope
    # that asks for the new values instead (as JAX's trainer does).
    logs = DistillationLogs(["loss"])
    logs.update_state({"loss": (2.0, 1.0)})
    with keras.StatelessScope() as scope:
        logs.update_state({"loss": (9.0, 1.0)})
    assert _values(logs) == {"loss": 2.0}
    assert keras.ops.convert_to_numpy(scope.get_current_value(logs.sums)).tolist() == [11.0, 2.0]


class _CountingLayer(keras.layers.Layer):
    """An identity layer holding a metric, as a user's layer may."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = keras.metrics.Sum(name=f"{self.name}_calls")

    def call(self, inputs):
        return inputs


def test_the_distillers_metrics_leave_out_the_teachers_layers_only():
    from keras_kd import Distiller

    shared = _CountingLayer(name="shared")

    def model(counting):
        inputs = keras.Input((4,))
        hidden = shared(counting(keras.layers.Dense(8)(inputs)))
        return keras.Model(inputs, keras.layers.Dense(3)(hidden))

    teacher, student = model(_CountingLayer(name="teachers")), model(_CountingLayer(name="students"))
    distiller = Distiller(teacher, student, alpha=0.5).compile(optimizer="sgd", metrics=["accuracy"])
    everything = keras.Model.metrics.fget(distiller)
    names = [metric.name for metric in everything]
    assert "teachers_calls" in names
    # Keras's walk and order, less what only the teacher holds.
    assert distiller.metrics == [metric for metric in everything if metric.name != "teachers_calls"]
    assert {"students_calls", "shared_calls"} <= {metric.name for metric in distiller.metrics}
