import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_kd
from conftest import REQUESTED_BACKEND, make_data, make_mlp, run_in_backend
from losses_support import numpy_soft_target_kl


def make_pair(num_classes=3):
    teacher = make_mlp(32, num_classes=num_classes, name="teacher", dropout=0.3)
    student = make_mlp(8, num_classes=num_classes, name="student")
    return teacher, student


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def assert_same_weights(first, second, **tolerance):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        if tolerance:
            np.testing.assert_allclose(a, b, **tolerance)
        else:
            np.testing.assert_array_equal(a, b)


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ----------------------------------------------------------------- the loss


def test_evaluate_matches_a_numpy_reference_with_sample_weights():
    teacher, student = make_pair()
    x, y = make_data()
    weights = np.random.default_rng(1).uniform(0, 2, size=len(x)).astype("float32")
    distiller = keras_kd.Distiller(teacher, student, temperature=3.0, alpha=0.7)
    distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(x, y, sample_weight=weights, batch_size=64, return_dict=True, verbose=0)

    teacher_logits = teacher.predict(x, verbose=0)
    student_logits = student.predict(x, verbose=0)
    soft = numpy_soft_target_kl(teacher_logits, student_logits, 3.0)
    hard = -numpy_log_softmax(student_logits.astype("float64"))[np.arange(len(y)), y]
    expected = np.mean(weights * (0.7 * soft + 0.3 * hard))
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert logs["distillation_loss"] == pytest.approx(np.mean(weights * soft), rel=1e-4)
    assert logs["student_loss"] == pytest.approx(np.mean(weights * hard), rel=1e-4)
    agreement = np.mean(teacher_logits.argmax(-1) == student_logits.argmax(-1))
    assert logs["teacher_agreement"] == pytest.approx(agreement)
    assert logs["temperature"] == pytest.approx(3.0)
    assert logs["alpha"] == pytest.approx(0.7)


def test_default_kd_loss_is_positive_and_real_kl():
    # Core Keras's "kl_divergence" default skips the softmax and goes negative.
    teacher, student = make_pair()
    x, y = make_data()
    distiller = keras_kd.Distiller(teacher, student)
    logs = distiller.compile(optimizer="adam").evaluate(x, y, return_dict=True, verbose=0)
    assert logs["distillation_loss"] > 0
    expected = numpy_soft_target_kl(teacher.predict(x, verbose=0), student.predict(x, verbose=0), 4.0)
    assert logs["distillation_loss"] == pytest.approx(expected.mean(), rel=1e-4)


def test_alpha_zero_trains_exactly_like_plain_student_fit():
    teacher, student = make_pair()
    x, y = make_data()
    plain = keras.models.clone_model(student)
    plain.set_weights(student.get_weights())

    distiller = keras_kd.Distiller(teacher, student, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1)).fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    plain.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    plain.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert_same_weights(weights_of(student), weights_of(plain), rtol=1e-5, atol=1e-6)


def test_distillation_moves_the_student_towards_the_teacher():
    teacher, student = make_pair()
    x, _ = make_data(rows=64)
    distiller = keras_kd.Distiller(teacher, student, alpha=1.0, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    before = distiller.evaluate(x, return_dict=True, verbose=0)["distillation_loss"]
    distiller.fit(x, batch_size=16, epochs=15, verbose=0)
    after = distiller.evaluate(x, return_dict=True, verbose=0)["distillation_loss"]
    assert after < 0.5 * before


# ---------------------------------------------------------- frozen teacher


def test_teacher_is_frozen_bit_for_bit_and_in_inference_mode():
    teacher, student = make_pair()
    x, y = make_data()
    # Give BatchNorm non-trivial statistics so that training mode would move them.
    teacher.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x * 3 + 1, y, epochs=1, verbose=0)
    before = weights_of(teacher)
    teacher_predictions = teacher.predict(x, verbose=0)

    distiller = keras_kd.Distiller(teacher, student)
    assert teacher.trainable is False
    assert all(id(v) not in {id(t) for t in teacher.weights} for v in distiller.trainable_variables)
    distiller.compile(optimizer=keras.optimizers.Adam(0.05)).fit(x, y, batch_size=16, epochs=2, verbose=0)

    assert_same_weights(weights_of(teacher), before)
    np.testing.assert_array_equal(teacher.predict(x, verbose=0), teacher_predictions)


# ------------------------------------------------------------- label-free


def test_label_free_fit_never_reads_labels():
    teacher, student = make_pair()
    x, y = make_data()
    twin = keras.models.clone_model(student)
    twin.set_weights(student.get_weights())

    keras.utils.set_random_seed(1)
    history = (
        keras_kd.Distiller(teacher, student, alpha=1.0)
        .compile(optimizer="adam")
        .fit(x, batch_size=16, epochs=2, shuffle=False, verbose=0)
    )
    assert "student_loss" not in history.history
    assert history.history["loss"] == pytest.approx(history.history["distillation_loss"])

    # Garbage labels (out of range, so any read would fail or change the
    # result) still give the same student: only the metrics look at them.
    keras.utils.set_random_seed(1)
    keras_kd.Distiller(teacher, twin, alpha=1.0).compile(optimizer="adam").fit(
        x, (y + 1) % 3, batch_size=16, epochs=2, shuffle=False, verbose=0
    )
    assert_same_weights(weights_of(student), weights_of(twin), rtol=1e-6, atol=1e-7)


def test_labels_missing_while_alpha_below_one_is_a_clear_error():
    teacher, student = make_pair()
    x, _ = make_data()
    distiller = keras_kd.Distiller(teacher, student, alpha=0.5).compile(optimizer="adam")
    with pytest.raises(ValueError, match=r"Labels are missing, but alpha=0.5.*alpha=1.0"):
        distiller.fit(x, epochs=1, verbose=0)


# ---------------------------------------------------------------- labels


def test_one_hot_and_sparse_labels_train_identically():
    teacher, student = make_pair()
    x, y = make_data()
    twin = keras.models.clone_model(student)
    twin.set_weights(student.get_weights())
    for model, labels in ((student, y), (twin, np.eye(3, dtype="float32")[y])):
        keras_kd.Distiller(teacher, model).compile(optimizer="sgd", metrics=["accuracy"]).fit(
            x, labels, batch_size=16, epochs=1, shuffle=False, verbose=0
        )
    assert_same_weights(weights_of(student), weights_of(twin), rtol=1e-5, atol=1e-6)


def test_compiled_metrics_are_computed_on_the_student():
    teacher, student = make_pair()
    x, y = make_data()
    distiller = keras_kd.Distiller(teacher, student).compile(optimizer="sgd", metrics=["accuracy"])
    logs = distiller.evaluate(x, y, return_dict=True, verbose=0)
    expected = np.mean(student.predict(x, verbose=0).argmax(-1) == y)
    assert logs["accuracy"] == pytest.approx(expected)


# ------------------------------------------------------------- schedules


def test_a_polynomial_temperature_schedule_moves_t_inside_the_step():
    teacher, student = make_pair()
    x, y = make_data(rows=16)
    schedule = keras.optimizers.schedules.PolynomialDecay(5.0, 4, end_learning_rate=1.0)
    distiller = keras_kd.Distiller(teacher, student, temperature=schedule)
    history = distiller.compile(optimizer="sgd").fit(x, y, batch_size=16, epochs=6, verbose=0)
    # One step per epoch; the value used at step s is logged: 5 - s (floored at 1).
    assert history.history["temperature"] == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 1.0])
    assert float(ops.convert_to_numpy(distiller.temperature)) == pytest.approx(1.0)


def test_a_callable_alpha_schedule_and_jit_compile():
    teacher, student = make_pair()
    x, y = make_data(rows=16)
    distiller = keras_kd.Distiller(teacher, student, alpha=lambda step: 1.0 - 0.25 * step)
    history = distiller.compile(optimizer="sgd", jit_compile=True).fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert history.history["alpha"] == pytest.approx([1.0, 0.75, 0.5])


class _StepAsLoss(keras_kd.losses.DistillationLoss):
    """A loss whose value for every example is the step it is given (-1 without one)."""

    def call(self, teacher_logits, student_logits, temperature, step=None):
        # Times 0, the student's logits keep the loss differentiable (torch's backward needs a graph).
        return 0.0 * student_logits[:, 0] + (-1.0 if step is None else step)


def test_a_loss_reads_the_optimizers_step_in_training_and_none_in_evaluation():
    teacher, student = make_pair()
    x, y = make_data(rows=16)
    distiller = keras_kd.Distiller(teacher, student, alpha=1.0, distillation_loss=_StepAsLoss())
    history = distiller.compile(optimizer="sgd").fit(x, batch_size=8, epochs=2, verbose=0).history
    # Two steps an epoch: steps 0 and 1, then 2 and 3.
    assert history["distillation_loss"] == pytest.approx([0.5, 2.5])
    logs = distiller.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    assert logs["distillation_loss"] == pytest.approx(-1.0)


@pytest.mark.parametrize("mode", [{"run_eagerly": True}, {"jit_compile": True}])
def test_eager_and_compiled_steps_agree(mode):
    teacher, student = make_pair()
    x, y = make_data(rows=32)
    reference = keras.models.clone_model(student)
    reference.set_weights(student.get_weights())
    results = []
    for model, options in ((student, mode), (reference, {"jit_compile": False})):
        distiller = keras_kd.Distiller(teacher, model, temperature=2.0, alpha=0.5)
        history = distiller.compile(optimizer="sgd", **options).fit(
            x, y, batch_size=16, epochs=2, shuffle=False, verbose=0
        )
        results.append(history.history["loss"])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4)
    assert_same_weights(weights_of(student), weights_of(reference), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ save / load


def test_save_load_round_trip_keeps_predictions_and_continues_fit(tmp_path):
    teacher, student = make_pair()
    x, y = make_data()
    schedule = keras.optimizers.schedules.PolynomialDecay(5.0, 8, end_learning_rate=1.0)
    distiller = keras_kd.Distiller(teacher, student, temperature=schedule, alpha=0.8)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)

    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, keras_kd.Distiller)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded.teacher.predict(x, verbose=0), teacher.predict(x, verbose=0))
    assert loaded.teacher.trainable is False
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 4

    # No compile() call: the compile config (optimizer state included) is restored.
    history = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert "accuracy" in history.history
    assert int(ops.convert_to_numpy(loaded.optimizer.iterations)) == 8
    assert history.history["temperature"] == pytest.approx([5.0 - 4.0 * 7 / 8])


def test_student_saves_alone_as_a_plain_model(tmp_path):
    teacher, student = make_pair()
    x, y = make_data()
    distiller = keras_kd.Distiller(teacher, student).compile(optimizer="adam")
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.student.save(tmp_path / "student.keras")
    loaded = keras.saving.load_model(tmp_path / "student.keras")
    assert not isinstance(loaded, keras_kd.Distiller)
    assert [w.shape for w in loaded.weights] == [w.shape for w in student.weights]
    assert loaded.count_params() == student.count_params()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), student.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.slow
def test_a_distiller_saved_here_loads_on_the_other_backends(tmp_path):
    teacher, student = make_pair()
    x, y = make_data()
    distiller = keras_kd.Distiller(teacher, student).compile(optimizer="adam")
    distiller.fit(x, y, epochs=1, verbose=0)
    model_path, x_path = tmp_path / "distiller.keras", tmp_path / "x.npy"
    distiller.save(model_path)
    np.save(x_path, x)
    expected = distiller.predict(x, verbose=0)
    for other in sorted({"torch", "tensorflow", "jax"} - {REQUESTED_BACKEND}):
        output_path = tmp_path / f"{other}.npy"
        run_in_backend(
            other,
            "import torch, keras, numpy as np, keras_kd\n"
            f"model = keras.saving.load_model({str(model_path)!r}, safe_mode=True)\n"
            # A JAX save asks for jit_compile, which torch honours with
            # torch.compile: the slowest compiler here, already tested in
            # test_a_callable_alpha_schedule_and_jit_compile.
            "if keras.config.backend() == 'torch':\n"
            "    model.jit_compile = False\n"
            f"np.save({str(output_path)!r}, model.predict(np.load({str(x_path)!r}), verbose=0))\n"
            f"model.fit(np.load({str(x_path)!r}), np.zeros(64, 'int32'), epochs=1, verbose=0)\n",
        )
        np.testing.assert_allclose(np.load(output_path), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"temperature": 0.0}, ValueError, r"`temperature` must be > 0.*got 0.0"),
        ({"temperature": -2}, ValueError, r"`temperature` must be > 0.*got -2.0"),
        ({"temperature": math.nan}, ValueError, r"`temperature` must be finite; got nan"),
        ({"temperature": math.inf}, ValueError, r"`temperature` must be finite; got inf"),
        ({"temperature": "4"}, TypeError, r"`temperature` must be a real number.*got '4' of type str"),
        ({"temperature": True}, TypeError, r"got True of type bool"),
        ({"alpha": 1.5}, ValueError, r"`alpha` must be in \[0, 1\].*got 1.5"),
        ({"alpha": -0.1}, ValueError, r"`alpha` must be in \[0, 1\].*got -0.1"),
        ({"alpha": math.nan}, ValueError, r"`alpha` must be finite; got nan"),
        ({"alpha": None}, TypeError, r"`alpha` must be a real number.*got None"),
        ({"alpha": lambda step: 2.0 + step}, ValueError, r"`alpha\(step=0\)` must be in \[0, 1\].*got 2.0"),
        ({"distillation_loss": "kl_divergence"}, TypeError, r"distillation_loss must be"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, error, message):
    teacher, student = make_pair()
    with pytest.raises(error, match=message):
        keras_kd.Distiller(teacher, student, **kwargs)


def test_models_that_cannot_be_distilled_are_refused():
    teacher, student = make_pair()
    with pytest.raises(TypeError, match=r"`teacher` must be a keras.Model.*type str"):
        keras_kd.Distiller("teacher.keras", student)
    with pytest.raises(TypeError, match=r"`student` must be a keras.Model.*type function"):
        keras_kd.Distiller(teacher, lambda x: x)
    with pytest.raises(ValueError, match="same model object"):
        keras_kd.Distiller(teacher, teacher)
    with pytest.raises(ValueError, match=r"teacher outputs logits of shape \(None, 3\).*\(None, 5\).*3 units"):
        keras_kd.Distiller(teacher, make_mlp(8, num_classes=5))
    with pytest.raises(ValueError, match=r"inputs of shape \[\(None, 8\)\].*\[\(None, 6\)\]"):
        keras_kd.Distiller(teacher, make_mlp(8, input_dim=6))
    inputs = keras.Input((8,))
    softmax_teacher = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="ends in a softmax.*activation=None"):
        keras_kd.Distiller(softmax_teacher, student)


def test_labels_of_the_wrong_shape_are_refused():
    teacher, student = make_pair()
    x, _ = make_data()
    distiller = keras_kd.Distiller(teacher, student).compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"Labels of shape \(.*, 2\) do not fit"):
        distiller.fit(x, np.zeros((64, 2), "float32"), epochs=1, verbose=0)


def test_compile_returns_the_distiller_and_refuses_a_probability_loss():
    teacher, student = make_pair()
    distiller = keras_kd.Distiller(teacher, student)
    assert distiller.compile(optimizer="adam") is distiller
    with pytest.raises(ValueError, match="from_logits=False"):
        distiller.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy())


def test_an_unbuilt_sequential_student_is_built_from_the_teacher_inputs():
    teacher, _ = make_pair()
    student = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    x, y = make_data()
    distiller = keras_kd.Distiller(teacher, student).compile(optimizer="adam")
    distiller.fit(x, y, epochs=1, verbose=0)
    assert student.built and student.count_params() == 8 * 8 + 8 + 8 * 3 + 3


def test_label_free_fit_with_compiled_metrics_and_labelled_validation():
    # Keras builds compiled metrics from the first batch; without labels they
    # must wait for the labelled validation data instead of failing.
    x, y = make_data()
    teacher = make_mlp(16, name="teacher")
    student = make_mlp(4, name="student")
    distiller = keras_kd.Distiller(teacher, student, alpha=1.0).compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(x, validation_data=(x, y), epochs=2, batch_size=16, verbose=0)
    predictions = np.argmax(student.predict(x, verbose=0), axis=-1)
    assert history.history["val_accuracy"][-1] == pytest.approx(np.mean(predictions == y))
    # Training had no labels: no training accuracy is logged (not a stale 0.0).
    assert "accuracy" not in history.history
    assert len(history.history["distillation_loss"]) == 2


def test_logits_large_enough_to_be_chunked_train():
    # (2, 32, 65,600) logits exceed the chunking threshold of the logit losses
    # (keras_kd.losses), whose loop TensorFlow must differentiate.
    def token_model(units, name):
        tokens = keras.Input((32,), dtype="int32")
        hidden = keras.layers.Embedding(16, units)(tokens)
        return keras.Model(tokens, keras.layers.Dense(65_600)(hidden), name=name)

    x = np.random.default_rng(0).integers(0, 16, (2, 32)).astype("int32")
    distiller = keras_kd.Distiller(token_model(4, "teacher"), token_model(2, "student"), temperature=2.0, alpha=1.0)
    history = distiller.compile(optimizer="adam").fit(x, epochs=1, batch_size=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
