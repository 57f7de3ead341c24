"""Several teachers distilled into one student: the target against a NumPy reference, caches, saving, bad input."""

import keras
import numpy as np
import pytest

import keras_kd
from conftest import make_data, make_mlp

TEMPERATURE = 2.0
WEIGHTS = [1.0, 2.0, 3.0]


def token_model(units, name, classes=4, vocabulary=20, length=5):
    """Per-token logits `(batch, length, classes)`."""
    tokens = keras.Input((length,), dtype="int32")
    hidden = keras.layers.Embedding(vocabulary, units, embeddings_initializer="random_normal")(tokens)
    hidden = keras.layers.Dense(units, activation="relu")(hidden)
    return keras.Model(
        tokens,
        keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0))(hidden),
        name=name,
    )


def class_teachers():
    return [make_mlp(units, name=f"teacher_{units}", batchnorm=False) for units in (16, 24, 32)]


def log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def reference_loss(teachers, student, x, target):
    """T**2 KL(target || student at T), averaged over every position, in float64 NumPy."""
    weights = np.array(WEIGHTS) / sum(WEIGHTS)
    stacked = np.stack([teacher.predict(x, verbose=0).astype("float64") for teacher in teachers], axis=-2)
    log_p = log_softmax(stacked / TEMPERATURE)
    weights = weights.reshape((-1, 1))
    if target == "probabilities":
        target_p = (np.exp(log_p) * weights).sum(-2)
    else:
        target_p = np.exp(log_softmax((log_p * weights).sum(-2)))
    student_log_p = log_softmax(student.predict(x, verbose=0).astype("float64") / TEMPERATURE)
    return float((TEMPERATURE**2 * (target_p * (np.log(target_p) - student_log_p)).sum(-1)).mean())


@pytest.mark.parametrize("target", ["probabilities", "log_probabilities"])
@pytest.mark.parametrize("logits", ["classes", "tokens"])
def test_three_teachers_give_the_weighted_target_cached_and_uncached(target, logits):
    if logits == "classes":
        teachers, student = class_teachers(), make_mlp(8, name="student", batchnorm=False)
        x, y = make_data(32)
    else:
        teachers = [token_model(units, f"teacher_{units}") for units in (6, 8, 12)]
        student = token_model(3, "student")
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 20, (32, 5)).astype("int32"), rng.integers(0, 4, (32, 5))
    distiller = keras_kd.Distiller(
        teachers, student, teacher_weights=WEIGHTS, ensemble_target=target, temperature=TEMPERATURE, alpha=1.0
    ).compile(optimizer="adam")
    assert [teacher.name for teacher in distiller.teachers] == [teacher.name for teacher in teachers]
    expected = reference_loss(teachers, student, x, target)
    logs = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    assert logs["distillation_loss"] == pytest.approx(expected, rel=1e-4)

    # The cache holds each teacher's outputs; the target is formed at the step's temperature.
    cache = keras_kd.TeacherCache.for_distiller(distiller, x)
    distiller.temperature.assign(TEMPERATURE)
    cached = distiller.evaluate(cache.dataset(x, y, batch_size=32), return_dict=True, verbose=0)
    assert cached["distillation_loss"] == pytest.approx(expected, rel=1e-4)
    # The test can fail: one teacher alone gives another loss.
    alone = keras_kd.Distiller(teachers[0], student, temperature=TEMPERATURE, alpha=1.0).compile(optimizer="adam")
    assert abs(alone.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)["distillation_loss"] - expected) > 1e-4


@pytest.mark.parametrize(
    "settings",
    [
        dict(distillation_loss=keras_kd.losses.ReverseKL()),
        dict(distillation_loss=keras_kd.losses.GeneralizedJSD(beta=0.5)),
        dict(distillation_loss=keras_kd.losses.DecoupledKD()),
        dict(temperature=keras.optimizers.schedules.PolynomialDecay(4.0, 8, end_learning_rate=1.0)),
        dict(mixup=0.2, seed=0),
    ],
    ids=["reverse_kl", "jsd", "dkd", "temperature_schedule", "mixup"],
)
def test_an_ensemble_trains_with_every_loss_schedules_and_function_matching(settings):
    teachers, student = class_teachers(), make_mlp(8, name="student", batchnorm=False)
    x, y = make_data(32)
    y = np.where(np.arange(32) % 4 == 0, -1, y)  # a transfer set: some rows unlabelled
    distiller = keras_kd.Distiller(teachers, student, alpha=0.5, **settings).compile(optimizer="adam")
    before = [weight.copy() for teacher in teachers for weight in teacher.get_weights()]
    history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    after = [weight for teacher in teachers for weight in teacher.get_weights()]
    for kept, weight in zip(before, after):
        np.testing.assert_array_equal(kept, weight)  # the teachers stay frozen


def test_a_feature_match_reads_one_teacher_by_its_name():
    teachers, student = class_teachers(), make_mlp(8, name="student", batchnorm=False)
    x, y = make_data(32)
    match = keras_kd.FeatureMatch(teacher_layer="teacher_24", student_layer=student.layers[-1].name, weight=1.0)
    distiller = keras_kd.Distiller(teachers, student, alpha=1.0, feature_matches=[match]).compile(optimizer="adam")
    logs = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    expected = np.mean((teachers[1].predict(x, verbose=0) - student.predict(x, verbose=0)) ** 2)
    assert logs[match.name] == pytest.approx(expected, rel=1e-5)


def test_an_ensemble_distiller_saves_and_loads(tmp_path):
    teachers, student = class_teachers(), make_mlp(8, name="student", batchnorm=False)
    x, y = make_data(32)
    distiller = keras_kd.Distiller(
        teachers, student, teacher_weights=WEIGHTS, ensemble_target="log_probabilities", temperature=TEMPERATURE
    ).compile(optimizer="adam")
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.save(tmp_path / "ensemble.keras")
    loaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    assert loaded.teacher_weights == pytest.approx([w / sum(WEIGHTS) for w in WEIGHTS])
    assert loaded.ensemble_target == "log_probabilities"
    assert [teacher.name for teacher in loaded.teachers] == [teacher.name for teacher in teachers]
    expected = distiller.evaluate(x, y, return_dict=True, verbose=0)
    actual = loaded.evaluate(x, y, return_dict=True, verbose=0)
    assert actual["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_a_cache_of_other_teachers_is_refused():
    teachers, student = class_teachers(), make_mlp(8, name="student", batchnorm=False)
    x, y = make_data(32)
    distiller = keras_kd.Distiller(teachers, student).compile(optimizer="adam")
    others = keras_kd.Distiller(teachers[:2], make_mlp(8, name="other_student", batchnorm=False))
    cache = keras_kd.TeacherCache.for_distiller(others, x)
    with pytest.raises(keras_kd.CacheMismatchError):
        distiller.fit(cache.dataset(x, y), verbose=0)


def bad_ensembles():
    teachers = class_teachers()
    student = make_mlp(8, name="student", batchnorm=False)
    other_inputs = make_mlp(16, input_dim=6, name="other_inputs", batchnorm=False)
    other_classes = make_mlp(16, num_classes=5, name="other_classes", batchnorm=False)
    same_name = make_mlp(16, name="teacher_16", batchnorm=False)
    return [
        (dict(teacher=[]), ValueError, ["empty list"]),
        (dict(teacher=[teachers[0], teachers[0]]), ValueError, ["teacher[0] and teacher[1] are the same model"]),
        (dict(teacher=[teachers[0], same_name]), ValueError, ["both named 'teacher_16'"]),
        (dict(teacher=teachers, teacher_weights=[1.0, 2.0]), ValueError, ["2 weights for 3 teachers"]),
        (dict(teacher=teachers, teacher_weights=[1.0, -1.0, 1.0]), ValueError, ["[1.0, -1.0, 1.0]", "non-negative"]),
        (dict(teacher=teachers, teacher_weights=[0, 0, 0]), ValueError, ["all zero"]),
        (dict(teacher=teachers, teacher_weights=[1.0, float("nan"), 1.0]), ValueError, ["finite"]),
        (dict(teacher=teachers[0], teacher_weights=[1.0]), ValueError, ["given with one teacher"]),
        (dict(teacher=teachers, ensemble_target="mean"), ValueError, ["ensemble_target='mean'"]),
        (dict(teacher=[teachers[0], other_inputs]), ValueError, ["teacher[1] 'other_inputs' has inputs of shape"]),
        (dict(teacher=[teachers[0], other_classes]), ValueError, ["teacher[1] 'other_classes' has logits of shape"]),
        (dict(teacher=[teachers[0], student]), ValueError, ["same model object"]),
        (dict(teacher=[teachers[0], "teacher.keras"]), TypeError, ["teacher[1]"]),
    ], student


def test_bad_ensembles_are_refused_with_the_value():
    cases, student = bad_ensembles()
    for settings, error, fragments in cases:
        with pytest.raises(error) as raised:
            keras_kd.Distiller(student=student, **settings)
        for fragment in fragments:
            assert fragment in str(raised.value), (settings, str(raised.value))
