"""`keras_kd.metrics.DistillationLogs`: the Distiller's logs in one metric."""

import keras
import numpy as np
import pytest

from keras_kd.metrics import DistillationLogs


def _values(logs):
    return {name: float(keras.ops.convert_to_numpy(value)) for name, value in logs.result().items()}


def test_means_and_current_values_are_what_separate_metrics_would_report():
    logs = DistillationLogs(["loss", "agreement"], ["temperature"])
    mean = keras.metrics.Mean()
    for loss, batch in ((2.0, 4), (5.0, 2)):
        logs.update_state({"loss": (loss * batch, batch), "agreement": (3.0, 4.0)}, {"temperature": loss})
        mean.update_state(loss, sample_weight=batch)
    assert _values(logs) == pytest.approx({"loss": float(mean.result()), "agreement": 0.75, "temperature": 5.0})
    # A name left out adds nothing; None leaves the current values as they are.
    logs.update_state({"loss": (0.0, 6)})
    assert _values(logs)["loss"] == pytest.approx(18.0 / 12.0)
    assert _values(logs)["agreement"] == pytest.approx(0.75)
    assert _values(logs)["temperature"] == pytest.approx(5.0)


def test_reset_clears_the_means_and_keeps_the_current_values():
    logs = DistillationLogs(["loss"], ["temperature"])
    logs.update_state({"loss": (8.0, 4)}, {"temperature": 3.0})
    logs.reset_state()
    # A mean without any weight is 0, as for keras.metrics.Mean.
    assert _values(logs) == {"loss": 0.0, "temperature": 3.0}


def test_unknown_names_are_refused_with_the_names_it_keeps():
    logs = DistillationLogs(["loss"], ["temperature"])
    with pytest.raises(ValueError, match=r"Unknown mean names \['lost'\]; this metric keeps \['loss'\]"):
        logs.update_state({"lost": (1.0, 1.0)})
    with pytest.raises(ValueError, match=r"Unknown value names \['alpha'\]"):
        logs.update_state({"loss": (1.0, 1.0)}, {"alpha": 0.5})


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
