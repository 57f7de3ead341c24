"""The top-k teacher cache: k logits, their class ids and a tail logit per position, rebuilt in the step."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_kd
from conftest import ArrayBatches, make_data
from keras_kd.cache import INPUTS_KEY, TeacherCache, cached_teacher_outputs, kinds, topk

CLASSES = 40


def teacher_mlp(classes=CLASSES, name="teacher", input_shape=(8,), scale=1.0):
    """A classifier with spread-out logits, so that the top-k hold part of the mass, not all of it."""
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(16, activation="tanh", name=f"{name}_hidden")(inputs)
    logits = keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(stddev=scale))(hidden)
    return keras.Model(inputs, logits, name=name)


def student_mlp(classes=CLASSES, name="student", input_shape=(8,)):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(16, activation="relu", name=f"{name}_hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(classes)(hidden), name=name)


def softmax(logits):
    logits = np.asarray(logits, "float64")
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def rebuilt(batch_inputs):
    """The dense teacher logits the Distiller's step gets from a cached batch."""
    logits, _ = cached_teacher_outputs(batch_inputs, [])
    return ops.convert_to_numpy(logits)


def check_rebuilt_against_teacher(teacher_logits, dense, top_k, temperature=1.0):
    """Same top-k ids and probabilities at `temperature`, same rest mass, spread evenly over the other classes."""
    expected, actual = softmax(teacher_logits / temperature), softmax(dense / temperature)
    ids = np.argsort(-teacher_logits, axis=-1)[..., :top_k]
    np.testing.assert_array_equal(np.sort(np.argsort(-dense, axis=-1)[..., :top_k], -1), np.sort(ids, -1))
    np.testing.assert_allclose(
        np.take_along_axis(actual, ids, -1), np.take_along_axis(expected, ids, -1), rtol=1e-5, atol=1e-7
    )
    rest = 1.0 - np.take_along_axis(expected, ids, -1).sum(-1)
    assert rest.mean() > 0.05  # A real tail: the check below is not vacuous.
    in_top_k = np.zeros(dense.shape, bool)
    np.put_along_axis(in_top_k, ids, True, -1)
    np.testing.assert_allclose(np.where(in_top_k, 0.0, actual).sum(-1), rest, rtol=1e-5)
    tail = np.where(in_top_k, np.nan, actual)
    np.testing.assert_allclose(np.nanmax(tail, -1), np.nanmin(tail, -1), rtol=1e-6)
    # The logits themselves (not only their softmax): the teacher's top-k values, its normalizer.
    np.testing.assert_allclose(
        np.take_along_axis(dense, ids, -1), np.take_along_axis(teacher_logits, ids, -1), rtol=1e-6, atol=1e-6
    )
    log_normalizer = np.log(np.exp(np.asarray(teacher_logits, "float64") / temperature).sum(-1))
    np.testing.assert_allclose(np.log(np.exp(dense.astype("float64") / temperature).sum(-1)), log_normalizer, rtol=1e-6)


@pytest.mark.parametrize("top_k, tail_temperature", [(1, 1.0), (5, 1.0), (5, 4.0), (5, 0.5)])
def test_rebuilt_logits_give_back_the_top_k_probabilities_and_the_rest_mass(top_k, tail_temperature):
    x, y = make_data(24)
    teacher = teacher_mlp(scale=min(1.0, tail_temperature))  # Spread-out probabilities at T.
    cache = TeacherCache.build(teacher, x, top_k=top_k, batch_size=10, tail_temperature=tail_temperature)
    assert (cache.top_k, cache.num_classes, cache.tail_temperature) == (top_k, CLASSES, tail_temperature)
    values, class_ids, tail = cache.teacher_top_k
    assert values.shape == class_ids.shape == (24, top_k) and tail.shape == (24,)
    assert class_ids.dtype == np.int16 and tail.dtype == np.float32
    inputs, _ = cache.dataset(x, y, batch_size=24, shuffle=False)[0]
    check_rebuilt_against_teacher(teacher.predict_on_batch(x), rebuilt(inputs), top_k, tail_temperature)
    with pytest.raises(ValueError, match=f"top-{top_k} cache: it holds no dense logits"):
        _ = cache.teacher_logits


def test_per_token_logits_are_cached_and_rebuilt_at_every_position():
    x = np.random.default_rng(0).normal(size=(12, 5, 8)).astype("float32")
    teacher = teacher_mlp(input_shape=(5, 8))  # Logits (batch, time, classes).
    cache = TeacherCache.build(teacher, x, top_k=4)
    assert [array.shape for array in cache.teacher_top_k] == [(12, 5, 4), (12, 5, 4), (12, 5)]
    inputs, _ = cache.dataset(x, np.zeros((12, 5), "int32"), batch_size=12, shuffle=False)[0]
    dense = rebuilt(inputs)
    assert dense.shape == (12, 5, CLASSES)
    check_rebuilt_against_teacher(teacher.predict_on_batch(x), dense, 4)


def test_a_confident_teacher_keeps_its_tiny_rest_mass():
    # The top-2 hold all but ~1e-26 of the mass: 1 - sum(top-k probabilities)
    # is 0 in float32, but the tail logit keeps it.
    logits = np.array([[60.0, 59.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]], "float32")
    values, class_ids, tail = topk.compress(logits, 2)
    dense = ops.convert_to_numpy(topk.dense_logits(values, class_ids, tail, 5))
    assert np.all(np.isfinite(dense))
    log_rest = np.log(np.exp(logits[0, 2:].astype("float64")).sum()) - np.log(np.exp(logits[0].astype("float64")).sum())
    log_probabilities = dense - np.log(np.exp(dense.astype("float64")).sum(-1, keepdims=True))
    rest = np.log(np.exp(log_probabilities[0, 2:].astype("float64")).sum())
    assert rest == pytest.approx(log_rest, rel=1e-6)
    np.testing.assert_allclose(dense[1], 0.0, atol=1e-6)  # Ties: two of five equal logits, the tail the same.


def test_class_ids_take_the_smallest_dtype_that_holds_them():
    assert [topk.class_id_dtype(classes) for classes in (40, 32_768, 32_769, 65_536, 65_537, 128_000)] == [
        "int16",
        "int16",
        "uint16",
        "uint16",
        "int32",
        "int32",
    ]


def test_uint16_class_ids_above_32767_reach_the_step():
    classes = 40_000
    x, y = make_data(16)
    teacher = teacher_mlp(classes, scale=0.1)
    bias = np.zeros(classes, "float32")
    bias[-3:] = 20.0  # The top-3 are the last three classes, ids >= 39,997.
    teacher.layers[-1].bias.assign(bias)
    cache = TeacherCache.build(teacher, x, top_k=3)
    class_ids = cache.teacher_top_k[1]
    assert class_ids.dtype == np.uint16 and class_ids.min() >= classes - 3
    data = cache.dataset(x, y, batch_size=8, shuffle=False)
    dense = rebuilt(data[0][0])
    np.testing.assert_array_equal(
        np.sort(np.argsort(-dense, -1)[:, :3], -1), np.tile(np.arange(39_997, 40_000), (8, 1))
    )
    distiller = keras_kd.Distiller(teacher, student_mlp(classes), alpha=1.0).compile(optimizer="sgd")
    history = distiller.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def row_id_teacher():
    """Logits `[row id, 0, 0]` for an input whose first feature is the row id."""
    inputs = keras.Input((8,))
    kernel = np.zeros((8, 3), "float32")
    kernel[0, 0] = 1.0
    logits = keras.layers.Dense(3, use_bias=False, kernel_initializer=keras.initializers.Constant(kernel))(inputs)
    return keras.Model(inputs, logits, name="row_id_teacher")


class RecordingDistiller(keras_kd.Distiller):
    """Records the rows and the (rebuilt) teacher logits each training step receives (run eagerly)."""

    def prepare_batch(self, data, training):
        batch = super().prepare_batch(data, training)
        if training:
            self.seen.append([keras.ops.convert_to_numpy(value) for value in (batch.x, batch.teacher_logits)])
        return batch


def row_id_logits(batch_x):
    return np.stack([batch_x[:, 0], 0 * batch_x[:, 0], 0 * batch_x[:, 0]], -1)


def test_shuffled_rows_reach_the_step_with_their_own_top_k_outputs(tmp_path):
    # With top_k=2 of [row, 0, 0] the tail logit is 0 and the rebuilt logits
    # are the teacher's exactly: any misaligned row would show.
    x, _ = make_data(40)
    row_ids = np.arange(40)
    x[:, 0] = row_ids
    teacher = row_id_teacher()
    cache = TeacherCache.build(teacher, x, top_k=2, batch_size=16)
    data = cache.dataset(x, row_ids % 3, batch_size=16, seed=3)
    assert data.keras_arrays() is not None  # In memory: Keras's array adapter batches them.
    distiller = RecordingDistiller(teacher, student_mlp(3), alpha=0.5)
    distiller.seen = []
    distiller.compile(optimizer="sgd", run_eagerly=True).fit(data, epochs=1, verbose=0)
    assert len(distiller.seen) == len(data)
    order = np.concatenate([batch_x[:, 0] for batch_x, _ in distiller.seen]).astype(int)
    assert sorted(order) == list(row_ids) and list(order) != list(row_ids)
    for batch_x, teacher_logits in distiller.seen:
        np.testing.assert_array_equal(teacher_logits, row_id_logits(batch_x))

    # Memory-mapped rows: batched by the cache itself.
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    cache = TeacherCache.build(teacher, mapped, top_k=2, batch_size=16, path=tmp_path / "cache")
    data = cache.dataset(mapped, row_ids % 3, batch_size=16, seed=3)
    assert data.keras_arrays() is None
    order = []
    for index in range(len(data)):
        inputs, labels = data[index]
        np.testing.assert_array_equal(rebuilt(inputs), row_id_logits(inputs[INPUTS_KEY]))
        np.testing.assert_array_equal(labels, inputs[INPUTS_KEY][:, 0].astype(int) % 3)
        order.extend(inputs[INPUTS_KEY][:, 0].astype(int))
    assert sorted(order) == list(row_ids) and order != list(row_ids)


def test_batches_of_a_py_dataset_keep_their_top_k_outputs():
    x, y = make_data(36)
    x[:, 0] = np.arange(36)
    teacher = row_id_teacher()
    batches = ArrayBatches(x, y, batch_size=8)
    cache = TeacherCache.build(teacher, batches, top_k=1)
    data = cache.dataset(batches, seed=1)
    for index in range(len(data)):
        inputs, labels = data[index]
        np.testing.assert_array_equal(rebuilt(inputs), row_id_logits(inputs[INPUTS_KEY]))
        np.testing.assert_array_equal(labels, y[inputs[INPUTS_KEY][:, 0].astype(int)])


def test_distillation_from_a_top_k_cache_trains():
    x, y = make_data(64)
    teacher = teacher_mlp()
    cache = TeacherCache.build(teacher, x, top_k=4, feature_layers=["teacher_hidden"])
    match = keras_kd.FeatureMatch("teacher_hidden", "student_hidden", weight=0.1)
    distiller = keras_kd.Distiller(teacher, student_mlp(), alpha=1.0, temperature=2.0, feature_matches=[match])
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    data = cache.dataset(x, y, batch_size=16, seed=0)
    losses = distiller.fit(data, epochs=8, verbose=0).history["distillation_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.6 * losses[0]
    agreement = np.mean(
        np.argmax(distiller.student.predict(x, verbose=0), -1) == np.argmax(teacher.predict(x, verbose=0), -1)
    )
    assert agreement > 0.2  # Chance: 1/40.


@pytest.mark.parametrize(
    "loss",
    [
        keras_kd.losses.ReverseKL(),
        keras_kd.losses.GeneralizedJSD(beta=0.5),
        keras_kd.losses.TotalVariation(),
        keras_kd.losses.DecoupledKD(),
        keras_kd.losses.SoftTargetKL(standardize=True),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_every_logit_loss_trains_from_a_top_k_cache(loss):
    x, y = make_data(32, num_classes=CLASSES)
    teacher = teacher_mlp()
    cache = TeacherCache.build(teacher, x, top_k=4)
    distiller = keras_kd.Distiller(teacher, student_mlp(), alpha=0.9, distillation_loss=loss)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    losses = distiller.fit(cache.dataset(x, y, batch_size=16, seed=0), epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_saved_top_k_cache_loads_and_trains(tmp_path):
    x, y = make_data(32)
    teacher = teacher_mlp()
    in_memory = TeacherCache.build(teacher, x, top_k=8)
    path = tmp_path / "cache"
    dense = TeacherCache.build(teacher, x, path=path)
    on_disk = TeacherCache.build(teacher, x, top_k=8, path=path, overwrite=True)
    assert sorted(os.listdir(path)) == ["000.npy", "001.npy", "002.npy", "metadata.json"]
    loaded = TeacherCache.load(path)
    assert "top-8 of 40 classes" in repr(loaded)
    for cache in (on_disk, loaded):
        assert (cache.top_k, cache.num_classes, cache.num_rows) == (8, 40, 32)
        assert all(isinstance(array, np.memmap) for array in cache.teacher_top_k)
        for actual, expected in zip(cache.teacher_top_k, in_memory.teacher_top_k):
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
        assert cache.teacher_fingerprint == dense.teacher_fingerprint
        assert cache.data_fingerprint == dense.data_fingerprint
    # Per position: 8 float32 logits, 8 int16 ids, one float32 tail logit.
    assert loaded.nbytes == in_memory.nbytes == 32 * (8 * 4 + 8 * 2 + 4)
    assert dense.nbytes == 32 * 40 * 4 and TeacherCache.load(path).top_k == 8
    distiller = keras_kd.Distiller(teacher, student_mlp()).compile(optimizer="sgd")
    history = distiller.fit(loaded.dataset(x, y, batch_size=8), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_a_top_k_batch_carries_its_class_count_and_old_metadata_still_loads(tmp_path):
    x, y = make_data(16)
    teacher = teacher_mlp()
    path = tmp_path / "cache"
    cache = TeacherCache.build(teacher, x, top_k=3, path=path)
    inputs, _ = cache.dataset(x, y, batch_size=8, shuffle=False)[0]
    assert kinds.kind_of_batch(inputs) is kinds.TopKLogits
    entry = inputs[kinds.TopKLogits.batch_key]
    assert sorted(entry) == sorted([*topk.ARRAY_NAMES, kinds.CLASS_COUNT])
    # The class count is the static shape of an empty array: no bytes, no key to parse.
    assert entry[kinds.CLASS_COUNT].shape == (8, 0, CLASSES) and entry[kinds.CLASS_COUNT].nbytes == 0
    assert rebuilt(inputs).shape == (8, CLASSES)

    metadata_file = path / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    assert (metadata["top_k"], metadata["tail_temperature"], metadata["num_classes"]) == (3, 1.0, CLASSES)
    # Top-k caches written before tail temperatures have no such key: their tail is exact at 1.
    del metadata["tail_temperature"]
    metadata_file.write_text(json.dumps(metadata))
    loaded = TeacherCache.load(path)
    assert (loaded.top_k, loaded.tail_temperature, loaded.num_classes) == (3, 1.0, CLASSES)
    for actual, expected in zip(loaded.teacher_top_k, cache.teacher_top_k):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(
    "top_k, message",
    [
        (0, "`top_k` must be an integer in 1..C-1.*got 0"),
        (-3, "got -3"),
        (2.5, "got 2.5"),
        (True, "got True"),
        ("8", "got '8'"),
        (CLASSES, f"`top_k` must be in 1..{CLASSES - 1} for a teacher with {CLASSES} classes; got top_k={CLASSES}"),
        (CLASSES + 5, f"1..{CLASSES - 1} .*got top_k={CLASSES + 5}"),
    ],
)
def test_bad_top_k_is_refused_and_an_existing_cache_is_left_intact(top_k, message, tmp_path):
    x, _ = make_data(16)
    teacher = teacher_mlp()
    path = tmp_path / "cache"
    TeacherCache.build(teacher, x, path=path, top_k=3)
    before = {name: (path / name).read_bytes() for name in os.listdir(path)}
    with pytest.raises(ValueError, match=message):
        TeacherCache.build(teacher, x, path=path, overwrite=True, top_k=top_k)
    assert {name: (path / name).read_bytes() for name in os.listdir(path)} == before
    assert sorted(os.listdir(tmp_path)) == ["cache"]  # No staging directory left behind.
    assert TeacherCache.load(path).top_k == 3
    with pytest.raises(ValueError, match=message):
        TeacherCache.build(teacher, x, top_k=top_k)


def test_bad_tail_temperature_is_refused():
    x, _ = make_data(8)
    teacher = teacher_mlp()
    for value in (0.0, -1.0):
        with pytest.raises(ValueError, match=f"`tail_temperature` must be > 0.*got {value}"):
            TeacherCache.build(teacher, x, top_k=3, tail_temperature=value)
    with pytest.raises(TypeError, match="`tail_temperature` must be a real number; got '4'"):
        TeacherCache.build(teacher, x, top_k=3, tail_temperature="4")
    with pytest.raises(ValueError, match=r"`tail_temperature` \(4.0\) applies to a top-k cache only"):
        TeacherCache.build(teacher, x, tail_temperature=4.0)


def test_a_teacher_without_a_class_axis_is_refused():
    inputs = keras.Input((8,))
    scalar = keras.Model(inputs, keras.layers.Dense(1)(inputs)[:, 0])
    with pytest.raises(ValueError, match=r"logits of shape \(batch, ..., classes\)"):
        TeacherCache.build(scalar, make_data(8)[0], top_k=1)


def tagger(units, name, classes=6, time=5, vocabulary=12):
    """Per-token logits `(batch, time, classes)`."""
    tokens = keras.Input((time,), dtype="int32")
    hidden = keras.layers.Embedding(vocabulary, 8)(tokens)
    hidden = keras.layers.Dense(units, activation="relu")(hidden)
    return keras.Model(tokens, keras.layers.Dense(classes)(hidden), name=name)


def test_per_token_distillation_from_a_top_k_cache_matches_the_teacher_when_one_class_is_left_out():
    # With top_k = C - 1 the tail is a single class and its tail logit is its
    # own logit: the rebuilt logits are the teacher's, so a cached fit at rank
    # 3 (per-token weights, T != 1) trains as an uncached one.
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, 12, (24, 5)).astype("int32"), rng.integers(0, 6, (24, 5))
    weights = (np.arange(5)[None, :] < rng.integers(2, 6, (24, 1))).astype("float32")  # Padding.
    teacher = tagger(16, "teacher")
    initial = tagger(8, "student").get_weights()

    def distil(**data):
        keras.utils.set_random_seed(1)
        student = tagger(8, "student")
        student.set_weights(initial)
        distiller = keras_kd.Distiller(teacher, student, alpha=0.7, temperature=3.0)
        history = distiller.compile(optimizer=keras.optimizers.SGD(0.5)).fit(**data, epochs=3, shuffle=False, verbose=0)
        return student, history.history["loss"]

    uncached, uncached_losses = distil(x=x, y=y, sample_weight=weights, batch_size=8)
    cache = TeacherCache.build(teacher, x, top_k=5)
    assert cache.teacher_top_k[0].shape == (24, 5, 5)
    cached, cached_losses = distil(x=cache.dataset(x, y, sample_weight=weights, batch_size=8, shuffle=False))
    np.testing.assert_allclose(cached_losses, uncached_losses, rtol=1e-5)
    assert cached_losses[-1] < cached_losses[0]
    for expected, actual in zip(uncached.get_weights(), cached.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_per_token_distillation_from_a_top_k_cache_trains():
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, 12, (32, 5)).astype("int32"), rng.integers(0, 40, (32, 5))
    teacher = tagger(16, "teacher", classes=40)
    cache = TeacherCache.build(teacher, x, top_k=4)
    distiller = keras_kd.Distiller(teacher, tagger(8, "student", classes=40), alpha=1.0, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.Adam(0.02))
    losses = distiller.fit(cache.dataset(x, y, batch_size=8, seed=0), epochs=5, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_a_temperature_other_than_1_is_warned_about():
    x, y = make_data(16)
    teacher = teacher_mlp()
    data = TeacherCache.build(teacher, x, top_k=4).dataset(x, y, batch_size=16)
    with pytest.warns(
        UserWarning, match="temperature 4 from a top-4 teacher cache whose tail is exact at temperature 1"
    ):
        keras_kd.Distiller(teacher, student_mlp(), temperature=4.0).compile(optimizer="sgd").fit(data, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_kd.Distiller(teacher, student_mlp(), temperature=1.0).compile(optimizer="sgd").fit(data, verbose=0)
        dense = TeacherCache.build(teacher, x).dataset(x, y, batch_size=16)
        tail_at_4 = TeacherCache.build(teacher, x, top_k=4, tail_temperature=4.0).dataset(x, y, batch_size=16)
        keras_kd.Distiller(teacher, student_mlp(), temperature=4.0).compile(optimizer="sgd").fit(tail_at_4, verbose=0)
        keras_kd.Distiller(teacher, student_mlp(), temperature=4.0).compile(optimizer="sgd").fit(dense, verbose=0)
    assert not [warning for warning in caught if "teacher cache" in str(warning.message)]


def test_a_top_k_cache_of_several_teachers_keeps_each_teachers_top_k():
    x, y = make_data(16)
    teachers = [teacher_mlp(classes=6, name=f"teacher_{index}", scale=3.0) for index in range(2)]
    cache = TeacherCache.build(teachers, x, top_k=2)
    top_k_logits, class_ids, tail = cache.teacher_top_k
    assert class_ids.shape == (16, 2, 2) and tail.shape == (16, 2)
    for index, teacher in enumerate(teachers):
        logits = teacher.predict(x, verbose=0)
        np.testing.assert_array_equal(np.sort(class_ids[:, index], -1), np.sort(np.argsort(-logits, -1)[:, :2], -1))
    per_teacher = 16 * (2 * top_k_logits.itemsize + 2 * class_ids.itemsize + tail.itemsize)
    assert (
        cache.teacher_nbytes == {"teacher_0": per_teacher, "teacher_1": per_teacher} and cache.nbytes == 2 * per_teacher
    )
    distiller = keras_kd.Distiller(teachers, student_mlp(classes=6), temperature=1.0).compile(optimizer="adam")
    assert np.isfinite(distiller.fit(cache.dataset(x, y, batch_size=8), epochs=1, verbose=0).history["loss"]).all()
