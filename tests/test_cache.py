import json
import os

import keras
import numpy as np
import pytest

import keras_kd
from conftest import ArrayBatches, make_data
from keras_kd.cache import INPUTS_KEY, LOGITS_KEY, CacheMismatchError, TeacherCache, fingerprints

# Cached and uncached training differ only in how the teacher's logits were
# batched when computed (32 rows at build time, 16 in the step), which can
# change the last float32 bits of a matmul.
WEIGHT_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


class CallCounter(keras.layers.Layer):
    """Identity layer that counts its calls (eager calls and traces)."""

    calls = 0

    def call(self, inputs):
        CallCounter.calls += 1
        return inputs


def mlp(hidden, name, counter=False):
    inputs = keras.Input((8,))
    features = CallCounter(name=f"{name}_counter")(inputs) if counter else inputs
    features = keras.layers.Dense(hidden, activation="relu", name=f"{name}_hidden")(features)
    features = keras.layers.BatchNormalization(name=f"{name}_bn")(features)
    return keras.Model(inputs, keras.layers.Dense(3, name=f"{name}_logits")(features), name=name)


def hidden_match(weight=0.5):
    return keras_kd.FeatureMatch("teacher_hidden", "student_hidden", weight=weight)


def test_cached_fit_matches_uncached_fit_and_never_calls_the_teacher():
    x, y = make_data(48)
    sample_weight = np.random.default_rng(1).uniform(0.5, 2.0, 48).astype("float32")
    teacher = mlp(16, "teacher", counter=True)
    initial = mlp(8, "student").get_weights()

    def distil(**data):
        keras.utils.set_random_seed(1)  # Same adapter initialisation.
        student = mlp(8, "student")
        student.set_weights(initial)
        distiller = keras_kd.Distiller(teacher, student, alpha=0.6, feature_matches=[hidden_match()])
        distiller.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
        history = distiller.fit(**data, epochs=2, shuffle=False, verbose=0)
        return distiller, history.history

    CallCounter.calls = 0
    uncached, uncached_history = distil(x=x, y=y, sample_weight=sample_weight, batch_size=16)
    assert CallCounter.calls > 0  # The counter sees the teacher when it runs.

    cache = TeacherCache.for_distiller(uncached, x, batch_size=32)
    data = cache.dataset(x, y, sample_weight=sample_weight, batch_size=16, shuffle=False)
    CallCounter.calls = 0
    cached, cached_history = distil(x=data)
    cached_scores = cached.evaluate(data, return_dict=True, verbose=0)
    assert CallCounter.calls == 0

    for expected, actual in zip(uncached.student.get_weights(), cached.student.get_weights()):
        np.testing.assert_allclose(actual, expected, **WEIGHT_TOLERANCE)
    for name, values in uncached_history.items():
        np.testing.assert_allclose(cached_history[name], values, rtol=1e-5, err_msg=name)
    uncached_scores = cached.evaluate(x, y, sample_weight=sample_weight, return_dict=True, verbose=0)
    assert cached_scores["loss"] == pytest.approx(uncached_scores["loss"], rel=1e-5)


def test_shuffled_batches_keep_rows_labels_weights_and_outputs_aligned():
    x, _ = make_data(40)
    teacher = mlp(16, "teacher")
    cache = TeacherCache.build(teacher, x, batch_size=16)
    row_ids = np.arange(40)
    data = cache.dataset(x, row_ids, sample_weight=row_ids + 1.0, batch_size=16, seed=3)
    assert len(data) == 3
    orders = []
    for _ in range(2):
        order = []
        for index in range(len(data)):
            inputs, rows, weights = data[index]
            np.testing.assert_array_equal(inputs[INPUTS_KEY], x[rows])
            np.testing.assert_array_equal(weights, rows + 1.0)
            np.testing.assert_array_equal(inputs[LOGITS_KEY], cache.teacher_logits[rows])
            np.testing.assert_allclose(inputs[LOGITS_KEY], teacher.predict_on_batch(x[rows]), rtol=1e-5, atol=1e-6)
            order.extend(rows)
        assert sorted(order) == list(row_ids)
        orders.append(order)
        data.on_epoch_end()
    assert orders[0] != orders[1] and orders[0] != list(row_ids)


class RecordingDistiller(keras_kd.Distiller):
    """Records, per training step, the rows and teacher outputs the step receives (run eagerly)."""

    def prepare_batch(self, data, training):
        batch = super().prepare_batch(data, training)
        if training:
            self.seen.append(
                [
                    keras.ops.convert_to_numpy(value)
                    for value in (batch.x, batch.y, batch.sample_weight, batch.teacher_logits)
                ]
            )
        return batch


def row_id_teacher():
    """A teacher whose first logit is its input's first feature: the row id below."""
    inputs = keras.Input((8,))
    kernel = np.zeros((8, 3), "float32")
    kernel[0, 0] = 1.0
    logits = keras.layers.Dense(3, use_bias=False, kernel_initializer=keras.initializers.Constant(kernel))(inputs)
    return keras.Model(inputs, logits, name="row_id_teacher")


def test_shuffled_rows_reach_the_step_with_their_own_teacher_outputs():
    x, _ = make_data(40)
    row_ids = np.arange(40)
    x[:, 0] = row_ids
    teacher = row_id_teacher()
    cache = TeacherCache.build(teacher, x, batch_size=16)
    data = cache.dataset(x, row_ids % 3, sample_weight=row_ids + 1.0, batch_size=16, seed=3)
    inputs, labels, weights = data.keras_arrays()  # In memory: Keras's array adapter batches them.
    assert np.shares_memory(inputs[INPUTS_KEY], x) and inputs[LOGITS_KEY].shape == (40, 3)
    distiller = RecordingDistiller(teacher, mlp(8, "student"), alpha=0.5)
    distiller.seen = []
    distiller.compile(optimizer="sgd", run_eagerly=True).fit(data, epochs=2, verbose=0)
    assert len(distiller.seen) == 2 * len(data)
    epochs = [distiller.seen[: len(data)], distiller.seen[len(data) :]]
    for steps in epochs:
        order = np.concatenate([batch_x[:, 0] for batch_x, _, _, _ in steps]).astype(int)
        assert sorted(order) == list(row_ids)
        for batch_x, batch_y, batch_weights, teacher_logits in steps:
            np.testing.assert_array_equal(teacher_logits[:, 0], batch_x[:, 0])
            np.testing.assert_array_equal(batch_y, batch_x[:, 0].astype(int) % 3)
            np.testing.assert_array_equal(batch_weights, batch_x[:, 0] + 1.0)
    first, second = (np.concatenate([step[0][:, 0] for step in steps]) for steps in epochs)
    assert list(first) != list(row_ids)
    # Keras's TensorFlow array adapter draws the same order in every epoch
    # once keras.utils.set_random_seed fixed the global seed (conftest does),
    # as it does for model.fit(x, y); the others draw a new one.
    assert list(first) != list(second) or keras.config.backend() == "tensorflow"

    distiller.seen = []
    distiller.fit(cache.dataset(x, row_ids % 3, batch_size=16, shuffle=False), epochs=1, verbose=0)
    np.testing.assert_array_equal(np.concatenate([step[0][:, 0] for step in distiller.seen]), row_ids)


def test_memory_mapped_rows_are_batched_by_the_cache(tmp_path):
    x, y = make_data(40)
    x[:, 0] = np.arange(40)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    teacher = row_id_teacher()
    cache = TeacherCache.build(teacher, mapped, batch_size=16, path=tmp_path / "cache")
    data = cache.dataset(mapped, y, batch_size=16, seed=0)
    assert data.keras_arrays() is None  # Read a batch at a time, by the PyDataset.
    distiller = RecordingDistiller(teacher, mlp(8, "student"))
    distiller.seen = []
    distiller.compile(optimizer="sgd", run_eagerly=True).fit(data, epochs=1, verbose=0)
    rows = np.concatenate([step[0][:, 0] for step in distiller.seen])
    assert sorted(rows) == list(range(40))
    for batch_x, batch_y, _, teacher_logits in distiller.seen:
        np.testing.assert_array_equal(teacher_logits[:, 0], batch_x[:, 0])
        np.testing.assert_array_equal(batch_y, y[batch_x[:, 0].astype(int)])


def test_cached_rows_hold_their_labels_and_batch_size():
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    cache = TeacherCache.build(teacher, x)
    distiller = keras_kd.Distiller(teacher, mlp(8, "student")).compile(optimizer="sgd")
    with pytest.raises(ValueError, match="holds the labels and sample weights; pass y=None"):
        distiller.fit(cache.dataset(x, y), y=y, verbose=0)
    with pytest.raises(ValueError, match="batches of 16 rows; got batch_size=8"):
        distiller.evaluate(cache.dataset(x, y, batch_size=16), batch_size=8, verbose=0)
    history = distiller.fit(
        cache.dataset(x, y, batch_size=16), epochs=1, validation_data=cache.dataset(x, y, shuffle=False), verbose=0
    )
    assert "val_loss" in history.history


def test_an_unchanged_teacher_is_hashed_once_and_an_edited_one_is_refused(monkeypatch):
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    cache = TeacherCache.build(teacher, x)
    hashed = []
    sha256 = fingerprints._weights_sha256
    monkeypatch.setattr(fingerprints, "_weights_sha256", lambda values: hashed.append(1) or sha256(values))
    data = cache.dataset(x, y)
    for _ in range(3):  # A sweep: fresh students, one teacher.
        distiller = keras_kd.Distiller(teacher, mlp(8, "student")).compile(optimizer="sgd")
        distiller.fit(data, epochs=1, verbose=0)
    assert hashed == []  # The weights' checksums match the ones remembered at build time.

    kernel = teacher.get_layer("teacher_hidden").kernel
    edited = keras.ops.convert_to_numpy(kernel).copy()
    edited[2, 3] = np.nextafter(edited[2, 3], np.inf)  # One element, by one ulp, in place.
    kernel.assign(edited)
    with pytest.raises(CacheMismatchError, match="other weights"):
        distiller.fit(data, epochs=1, verbose=0)
    assert hashed == [1]


def test_a_teacher_with_other_weights_is_refused():
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    cache = TeacherCache.build(teacher, x)
    same_weights = keras.models.clone_model(teacher)
    same_weights.set_weights(teacher.get_weights())
    cache.check_teacher(same_weights)  # The fingerprint is the weights, not the object.

    distiller = keras_kd.Distiller(teacher, mlp(8, "student")).compile(optimizer="sgd")
    distiller.fit(cache.dataset(x, y), verbose=0)
    teacher.get_layer("teacher_logits").bias.assign(np.ones(3, "float32"))
    for method in (distiller.fit, distiller.evaluate):
        with pytest.raises(CacheMismatchError, match="other weights.*rebuild"):
            method(cache.dataset(x, y), verbose=0)
    with pytest.raises(CacheMismatchError, match="other weights"):
        distiller.fit(x, y, validation_data=cache.dataset(x, y), verbose=0)


def test_other_data_are_refused():
    x, y = make_data(48)
    cache = TeacherCache.build(mlp(16, "teacher"), x)
    changed = x.copy()
    changed[5, 0] += 1.0
    with pytest.raises(CacheMismatchError, match=r"rows \[5\] changed"):
        cache.dataset(changed, y)
    with pytest.raises(CacheMismatchError, match="holds 48 rows of float32\\(8,\\); got 47 rows"):
        cache.dataset(x[:-1], y[:-1])
    with pytest.raises(CacheMismatchError, match="float64"):
        cache.dataset(x.astype("float64"), y)
    with pytest.raises(ValueError, match="`y` has 47 rows but `x` has 48"):
        cache.dataset(x, y[:-1])
    with pytest.raises(ValueError, match="`sample_weight` needs `y`"):
        cache.dataset(x, sample_weight=np.ones(48))
    import tensorflow as tf

    with pytest.raises(TypeError, match="tf.data.Dataset cannot be indexed"):
        cache.dataset(tf.data.Dataset.from_tensor_slices(x).batch(8))


def test_on_disk_cache_is_memory_mapped_and_round_trips(tmp_path):
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    in_memory = TeacherCache.build(teacher, x, feature_layers=["teacher_hidden"])
    path = tmp_path / "cache"
    on_disk = TeacherCache.build(teacher, x, feature_layers=["teacher_hidden"], path=path, batch_size=8)
    assert sorted(os.listdir(path)) == ["000.npy", "001.npy", "metadata.json"]
    assert sorted(os.listdir(tmp_path)) == ["cache"]  # No temporary directory left.
    loaded = TeacherCache.load(path)
    for cache in (on_disk, loaded):
        assert isinstance(cache.teacher_logits, np.memmap)
        np.testing.assert_allclose(cache.teacher_logits, in_memory.teacher_logits, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            cache.teacher_features("teacher_hidden"), in_memory.teacher_features("teacher_hidden"), rtol=1e-6, atol=1e-7
        )
        assert cache.data_fingerprint == in_memory.data_fingerprint
        assert cache.teacher_fingerprint == in_memory.teacher_fingerprint
    distiller = keras_kd.Distiller(teacher, mlp(8, "student"), feature_matches=[hidden_match()])
    distiller.compile(optimizer="sgd").fit(loaded.dataset(x, y, batch_size=8), epochs=1, verbose=0)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        TeacherCache.build(teacher, x, path=path)
    replaced = TeacherCache.build(teacher, x, path=path, overwrite=True)
    assert replaced.feature_layers == [] and sorted(os.listdir(path)) == ["000.npy", "metadata.json"]
    (tmp_path / "other").mkdir()
    with pytest.raises(FileExistsError, match="not a teacher cache"):
        TeacherCache.build(teacher, x, path=tmp_path / "other", overwrite=True)


def test_metadata_keeps_its_keys_and_caches_written_before_top_k_caches_still_load(tmp_path):
    x, _ = make_data(16)
    teacher = mlp(8, "teacher")
    path = tmp_path / "cache"
    expected = TeacherCache.build(teacher, x, path=path).teacher_logits.copy()
    metadata_file = path / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    assert list(metadata) == [
        "format",
        "version",
        "teacher",
        "feature_layers",
        "top_k",
        "tail_temperature",
        "data",
        "arrays",
    ]
    assert (metadata["top_k"], metadata["tail_temperature"]) == (None, None)
    # A dense cache written before top-k caches existed has neither key.
    del metadata["top_k"], metadata["tail_temperature"]
    metadata_file.write_text(json.dumps(metadata))
    loaded = TeacherCache.load(path)
    assert (loaded.top_k, loaded.tail_temperature, loaded.num_classes, loaded.teacher_top_k) == (None, None, 3, None)
    assert "dense logits" in repr(loaded)
    np.testing.assert_array_equal(loaded.teacher_logits, expected)
    (inputs,) = loaded.dataset(x, batch_size=16, shuffle=False)[0]
    np.testing.assert_array_equal(inputs[LOGITS_KEY], expected)


def test_truncated_corrupted_or_missing_files_are_detected(tmp_path):
    x, _ = make_data(32)
    path = tmp_path / "cache"
    TeacherCache.build(mlp(16, "teacher"), x, path=path)
    logits_file = path / "000.npy"
    original = logits_file.read_bytes()

    logits_file.write_bytes(original[:-12])
    with pytest.raises(ValueError, match="truncated"):
        TeacherCache.load(path)

    corrupted = bytearray(original)
    corrupted[-5] ^= 0xFF
    logits_file.write_bytes(bytes(corrupted))
    with pytest.raises(ValueError, match="corrupted"):
        TeacherCache.load(path)
    TeacherCache.load(path, verify=False)  # Only the checksum is skipped.

    logits_file.unlink()
    with pytest.raises(FileNotFoundError, match="lacks 000.npy"):
        TeacherCache.load(path)
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        TeacherCache.load(path)
    (path / "metadata.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="does not describe a keras_kd teacher cache"):
        TeacherCache.load(path)
    with pytest.raises(FileNotFoundError, match="No teacher cache"):
        TeacherCache.load(tmp_path / "missing")


def test_feature_matches_need_their_features_cached():
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    logits_only = TeacherCache.build(teacher, x)
    with_features = TeacherCache.build(teacher, x, feature_layers=[teacher.get_layer("teacher_hidden")])
    matching = keras_kd.Distiller(teacher, mlp(8, "student"), feature_matches=[hidden_match()])
    matching.compile(optimizer="sgd")
    with pytest.raises(CacheMismatchError, match=r"teacher layers \['teacher_hidden'\].*hold \[\]"):
        matching.fit(logits_only.dataset(x, y), verbose=0)
    with pytest.raises(CacheMismatchError, match="hold \\[\\]"):
        matching.fit(with_features.dataset(x, y, feature_layers=[]), verbose=0)
    history = matching.fit(with_features.dataset(x, y), verbose=0)
    assert "mse_student_hidden" in history.history
    with pytest.raises(ValueError, match="no layer named 'missing'"):
        TeacherCache.build(teacher, x, feature_layers=["missing"])
    with pytest.raises(KeyError, match="holds no features of layer 'missing'"):
        with_features.teacher_features("missing")


def test_random_augmentation_is_refused():
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    with pytest.raises(ValueError, match="different first batch when read twice.*augments"):
        TeacherCache.build(teacher, ArrayBatches(x, y, 8, noise=0.1))
    import tensorflow as tf

    shuffled = tf.data.Dataset.from_tensor_slices(x).shuffle(32, seed=None).batch(8)
    with pytest.raises(ValueError, match="different first batch"):
        TeacherCache.build(teacher, shuffled)

    cache = TeacherCache.build(teacher, x)
    augmenting = keras_kd.Distiller(teacher, mlp(8, "student"), augmentation=keras.layers.GaussianNoise(0.1)).compile(
        optimizer="sgd"
    )
    assert augmenting.transforms_inputs
    with pytest.raises(ValueError, match="transforms its inputs inside the training step"):
        augmenting.fit(cache.dataset(x, y), verbose=0)
    with pytest.raises(ValueError, match="transforms its inputs"):
        TeacherCache.for_distiller(augmenting, x)


def test_one_cache_feeds_a_sweep_of_distillers():
    x, y = make_data(32)
    teacher = mlp(16, "teacher", counter=True)
    cache = TeacherCache.build(teacher, x, feature_layers=["teacher_hidden"])
    data = cache.dataset(x, y, batch_size=16, seed=0, workers=2)  # Threads assemble batches.
    initial = mlp(8, "student").get_weights()
    CallCounter.calls = 0
    students = []
    for temperature, matches in ((2.0, []), (8.0, [hidden_match()])):
        student = mlp(8, "student")
        student.set_weights(initial)
        distiller = keras_kd.Distiller(teacher, student, temperature=temperature, feature_matches=matches)
        history = distiller.compile(optimizer=keras.optimizers.SGD(0.1)).fit(data, epochs=2, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        students.append(student)
    assert CallCounter.calls == 0
    assert not np.allclose(students[0].get_weights()[0], students[1].get_weights()[0])


def test_batched_datasets_as_sources():
    x, y = make_data(36)
    teacher = mlp(16, "teacher", counter=True)
    batches = ArrayBatches(x, y, batch_size=8)
    cache = TeacherCache.build(teacher, batches)
    assert cache.num_rows == 36
    # The data fingerprint does not depend on how the rows were delivered.
    assert cache.data_fingerprint == TeacherCache.build(teacher, x).data_fingerprint
    import tensorflow as tf

    from_tf = TeacherCache.build(teacher, tf.data.Dataset.from_tensor_slices((x, y)).batch(5))
    np.testing.assert_allclose(from_tf.teacher_logits, cache.teacher_logits, rtol=1e-5, atol=1e-6)

    data = cache.dataset(batches, seed=1)
    for index in range(len(data)):
        inputs, labels = data[index]
        rows = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in inputs[INPUTS_KEY]]
        np.testing.assert_array_equal(labels, y[rows])
        np.testing.assert_array_equal(inputs[LOGITS_KEY], cache.teacher_logits[rows])
    distiller = keras_kd.Distiller(teacher, mlp(8, "student")).compile(optimizer="sgd")
    CallCounter.calls = 0
    distiller.fit(data, epochs=1, verbose=0)
    assert CallCounter.calls == 0
    with pytest.raises(CacheMismatchError, match=r"Batch \d of the PyDataset .* is not the batch"):
        cache.dataset(ArrayBatches(x[::-1].copy(), y, batch_size=8))
    with pytest.raises(CacheMismatchError, match="this PyDataset has 3 batches"):
        cache.dataset(ArrayBatches(x, y, batch_size=16))
    with pytest.raises(ValueError, match="pass y=None"):
        cache.dataset(batches, y)


def test_bad_arguments_are_refused():
    x, _ = make_data(8)
    with pytest.raises(TypeError, match="`teacher` must be a keras.Model"):
        TeacherCache.build("teacher", x)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer; got 0"):
        TeacherCache.build(mlp(4, "teacher"), x, batch_size=0)
    with pytest.raises(ValueError, match="one row per example"):
        TeacherCache.build(mlp(4, "teacher"), [x, x[:4]])


def test_a_list_of_teachers_is_cached_as_for_distiller_with_each_teachers_size():
    x, y = make_data(32)
    teachers = [mlp(hidden, f"teacher_{hidden}") for hidden in (4, 6, 8)]
    cache = TeacherCache.build(teachers, x, feature_layers=["teacher_6"])
    assert cache.teacher_names == ["teacher_4", "teacher_6", "teacher_8"]
    expected = np.stack([teacher.predict(x, verbose=0) for teacher in teachers], axis=-2)
    np.testing.assert_allclose(cache.teacher_logits, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cache.teacher_features("teacher_6"), expected[:, 1], rtol=1e-6, atol=1e-6)
    logits_bytes = 32 * 3 * 4  # rows x classes x float32, per teacher
    assert cache.teacher_nbytes == {"teacher_4": logits_bytes, "teacher_6": 2 * logits_bytes, "teacher_8": logits_bytes}
    assert sum(cache.teacher_nbytes.values()) == cache.nbytes
    assert "3 teachers ['teacher_4', 'teacher_6', 'teacher_8']" in repr(cache)
    # The same cache as for_distiller's: a Distiller of these teachers trains from it.
    distiller = keras_kd.Distiller(teachers, mlp(4, "student")).compile(optimizer="adam")
    distiller_cache = TeacherCache.for_distiller(distiller, x)
    assert distiller_cache.teacher_fingerprint == cache.teacher_fingerprint
    assert distiller_cache.teacher_names == cache.teacher_names
    assert np.isfinite(distiller.fit(cache.dataset(x, y, batch_size=16), epochs=1, verbose=0).history["loss"]).all()
    # One teacher alone: its size is the whole cache's.
    single = TeacherCache.build(teachers[0], x)
    assert single.teacher_names == ["teacher_4"] and single.teacher_nbytes == {"teacher_4": single.nbytes}
    # Other teachers, or the same in another order, are refused by name.
    with pytest.raises(
        CacheMismatchError, match=r"cached 3 teachers .*this teacher 2 teachers \['teacher_4', 'teacher_8'\]"
    ):
        cache.check_teacher([teachers[0], teachers[2]])
    with pytest.raises(CacheMismatchError):
        cache.check_teacher(teachers[::-1])
    for bad, fragment in (([], "empty list"), ([teachers[0], teachers[0]], "the same model")):
        with pytest.raises(ValueError, match=fragment):
            TeacherCache.build(bad, x)
