"""The cache of augmented views: consistency, per-epoch draws, files and every refusal."""

import os

import keras
import numpy as np
import pytest

import keras_kd
from conftest import ArrayBatches
from keras_kd.cache import (
    INPUTS_KEY,
    LOGITS_KEY,
    CacheMismatchError,
    TeacherCache,
    cached_teacher_outputs,
    kinds,
    split_cached,
    topk,
    views,
)

ROWS, SIDE, CLASSES = 24, 8, 3
# The teacher's outputs on a batch of views against those cached when the
# views were made in other batches: equal up to float32 rounding of a matmul.
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def images(rows=ROWS, channels=1, seed=0):
    return np.random.default_rng(seed).random((rows, SIDE, SIDE, channels), dtype="float32")


def image_teacher(channels=1, name="teacher", side=SIDE):
    """A small CNN; `side=None` takes images of any size (RandomCrop and Resizing change it)."""
    inputs = keras.Input((side, side, channels))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name=f"{name}_conv")(inputs)
    hidden = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(hidden)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name=f"{name}_logits")(hidden), name=name)


def student():
    return keras_kd.models.mlp_student((SIDE, SIDE, 1), CLASSES, hidden_units=(8,))


def augmentation(factor=0.2):
    return keras.Sequential(
        [keras.layers.RandomTranslation(factor, factor), keras.layers.RandomRotation(0.1)], name="augment"
    )


class RecordingDistiller(keras_kd.Distiller):
    """Records each training step's inputs, sample weights and the teacher outputs it took (run eagerly)."""

    def prepare_batch(self, data, training):
        batch = super().prepare_batch(data, training)
        if training:
            self.seen.append(
                [keras.ops.convert_to_numpy(v) for v in (batch.x, batch.sample_weight, batch.teacher_logits)]
            )
        return batch


def test_the_teacher_on_every_batch_gives_back_its_cached_outputs_across_epochs_and_views():
    rows = 16
    x = images(rows)
    row_ids = np.arange(rows)
    teacher = image_teacher()
    cache = TeacherCache.build(teacher, x, augmentation=augmentation(), views=3, seed=0, batch_size=10)
    assert cache.num_views == 3 and cache.augmented_inputs.shape == (rows, 3, SIDE, SIDE, 1)
    assert cache.teacher_logits.shape == (rows, 3, CLASSES)
    data = cache.dataset(x, row_ids % CLASSES, sample_weight=row_ids + 1.0, batch_size=8, seed=5)
    distiller = RecordingDistiller(teacher, student())
    distiller.seen = []
    distiller.compile(optimizer="sgd", run_eagerly=True).fit(data, epochs=3, verbose=0)
    steps_per_epoch = 2
    assert len(distiller.seen) == 3 * steps_per_epoch
    views_seen = []
    for epoch in range(3):
        seen_rows, seen_views = [], {}
        for batch_x, weights, teacher_logits in distiller.seen[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]:
            np.testing.assert_allclose(teacher.predict_on_batch(batch_x), teacher_logits, **TOLERANCE)
            for row_x, weight, logits in zip(batch_x, weights, teacher_logits):
                row = int(weight) - 1  # The weights name the rows: they follow them through Keras's shuffling.
                matches = [v for v in range(3) if np.array_equal(cache.augmented_inputs[row, v], row_x)]
                assert matches, f"row {row} reached the step in none of its views"
                np.testing.assert_array_equal(logits, cache.teacher_logits[row, matches[0]])
                seen_rows.append(row)
                seen_views[row] = matches[0]
        assert sorted(seen_rows) == list(row_ids)
        views_seen.append([seen_views[row] for row in row_ids])
    # A new draw each epoch, and the draw of epoch e is the dataset's, whichever path batched it.
    assert views_seen[0] != views_seen[1] != views_seen[2]
    for epoch in range(3):
        data.set_epoch(epoch)
        assert list(data.current_views) == views_seen[epoch]


def test_views_are_the_augmentation_of_their_rows_and_differ_between_views():
    x = images()
    flip = keras.layers.RandomFlip("horizontal")
    cache = TeacherCache.build(image_teacher(), x, augmentation=flip, views=8, seed=1)
    stored = cache.augmented_inputs
    flipped = [np.array_equal(stored[row, view], x[row, :, ::-1]) for row in range(ROWS) for view in range(8)]
    same = [np.array_equal(stored[row, view], x[row]) for row in range(ROWS) for view in range(8)]
    assert all(a or b for a, b in zip(flipped, same)) and any(flipped) and any(same)


def test_each_epoch_draws_its_own_views_from_the_seed():
    x = images()
    cache = TeacherCache.build(image_teacher(), x, augmentation=augmentation(), views=4, seed=0)
    data = cache.dataset(x, np.zeros(ROWS, int), seed=7)
    draws = []
    for _ in range(4):
        draws.append(data.current_views)
        data.on_epoch_end()
    assert all(not np.array_equal(a, b) for a, b in zip(draws, draws[1:]))
    assert {int(v) for draw in draws for v in draw} == {0, 1, 2, 3}
    again = cache.dataset(x, np.zeros(ROWS, int), seed=7)
    for epoch in (3, 0, 2):  # A resumed run draws what an uninterrupted one drew.
        again.set_epoch(epoch)
        np.testing.assert_array_equal(again.current_views, draws[epoch])
    other = cache.dataset(x, np.zeros(ROWS, int), seed=8)
    assert not np.array_equal(other.current_views, draws[0])


def test_batches_read_by_index_keep_rows_labels_weights_and_views_aligned():
    x = images()
    row_ids = np.arange(ROWS)
    teacher = image_teacher()
    cache = TeacherCache.build(teacher, x, augmentation=augmentation(), views=3, seed=2)
    data = cache.dataset(x, row_ids, sample_weight=row_ids + 1.0, batch_size=10, seed=3)
    orders = []
    for _ in range(2):
        order, drawn = [], data.current_views
        for index in range(len(data)):
            batch_x, rows, weights = data[index]
            inputs, cached = split_cached(batch_x)
            np.testing.assert_array_equal(weights, rows + 1.0)
            np.testing.assert_array_equal(inputs, cache.augmented_inputs[rows, drawn[rows]])
            np.testing.assert_array_equal(cached[LOGITS_KEY], cache.teacher_logits[rows, drawn[rows]])
            np.testing.assert_allclose(teacher.predict_on_batch(inputs), cached[LOGITS_KEY], **TOLERANCE)
            order.extend(rows)
        assert sorted(order) == list(row_ids)
        orders.append(order)
        data.on_epoch_end()
    assert orders[0] != orders[1]


def test_saved_views_are_memory_mapped_checked_and_reloaded(tmp_path):
    x = images()
    teacher = image_teacher()
    path = tmp_path / "views"
    built = TeacherCache.build(teacher, x, augmentation=augmentation(), views=3, seed=4, path=path)
    cache = TeacherCache.load(path, augmentation=augmentation(), views=3, seed=4)
    assert isinstance(cache.augmented_inputs, np.memmap) and cache.num_views == 3
    np.testing.assert_array_equal(cache.augmented_inputs, built.augmented_inputs)
    data = cache.dataset(x, np.arange(ROWS) % CLASSES, batch_size=8, seed=0)
    arrays = data.keras_arrays()
    if arrays is not None:  # Keras's adapter batches the epoch's views (not on TensorFlow).
        np.testing.assert_allclose(teacher.predict_on_batch(arrays[0][INPUTS_KEY]), arrays[0][LOGITS_KEY], **TOLERANCE)
    distiller = keras_kd.Distiller(teacher, student()).compile(optimizer="sgd")
    assert np.isfinite(distiller.fit(data, epochs=2, verbose=0).history["loss"]).all()

    with pytest.raises(CacheMismatchError, match=r"augmentation \[RandomTranslation\(.*height_factor=0.2"):
        TeacherCache.load(path, augmentation=augmentation(factor=0.3))
    with pytest.raises(CacheMismatchError, match=r"views=3 \(cached\) against 5 \(given\)"):
        TeacherCache.load(path, augmentation=augmentation(), views=5)
    with pytest.raises(CacheMismatchError, match=r"seed=4 \(cached\) against 9 \(given\)"):
        cache.check_views(augmentation(), seed=9)
    with pytest.raises(CacheMismatchError, match="un-augmented rows, no views"):
        TeacherCache.build(teacher, x).check_views(augmentation())
    views_file = os.path.join(path, cache._metadata["arrays"][views.VIEWS]["file"])
    with open(views_file, "r+b") as file:
        file.seek(-4, os.SEEK_END)
        file.write(b"\x00\x00\x80\x7f")
    with pytest.raises(ValueError, match="corrupted"):
        TeacherCache.load(path)


def test_float16_views_are_what_the_teacher_saw():
    x = images()
    teacher = image_teacher()
    cache = TeacherCache.build(teacher, x, augmentation=augmentation(), views=2, seed=0, view_dtype="float16")
    assert cache.augmented_inputs.dtype == np.float16
    batch_x, _ = cache.dataset(x, np.zeros(ROWS, int), batch_size=ROWS, shuffle=False)[0]
    inputs, cached = split_cached(batch_x)
    np.testing.assert_allclose(teacher.predict_on_batch(inputs.astype("float32")), cached[LOGITS_KEY], **TOLERANCE)
    with pytest.raises(CacheMismatchError, match="view_dtype='float16' \\(cached\\) against 'float32'"):
        cache.check_views(augmentation(), view_dtype="float32")


def test_features_and_top_k_are_cached_per_view():
    x = images()
    teacher = image_teacher()
    cache = TeacherCache.build(
        teacher, x, augmentation=augmentation(), views=2, seed=0, feature_layers=["teacher_pool"], top_k=2
    )
    assert cache.teacher_features("teacher_pool").shape == (ROWS, 2, 4)
    assert [array.shape[:2] for array in cache.teacher_top_k] == [(ROWS, 2)] * 3
    data = cache.dataset(x, np.zeros(ROWS, int), batch_size=ROWS, shuffle=False)
    batch_x, _ = data[0]
    inputs, cached = split_cached(batch_x)
    features = keras.Model(teacher.input, teacher.get_layer("teacher_pool").output)
    np.testing.assert_allclose(
        features.predict_on_batch(inputs), cached["keras_kd_teacher_features"]["teacher_pool"], **TOLERANCE
    )
    top_logits = cached[kinds.TopKLogits.batch_key][topk.TOP_K_LOGITS]
    np.testing.assert_allclose(top_logits[:, 0], teacher.predict_on_batch(inputs).max(axis=-1), **TOLERANCE)
    rebuilt, _ = cached_teacher_outputs(cached, [])
    assert keras.ops.convert_to_numpy(rebuilt).shape == (ROWS, CLASSES)
    distiller = keras_kd.Distiller(teacher, student(), temperature=1.0)  # the top-k tail is exact at T=1
    assert np.isfinite(distiller.compile(optimizer="sgd").fit(data, epochs=1, verbose=0).history["loss"]).all()


# One instance of each supported layer, with factors large enough to move 8x8 images in [0, 1].
SUPPORTED = {
    "CenterCrop": lambda: keras.layers.CenterCrop(6, 6),
    "RandomBrightness": lambda: keras.layers.RandomBrightness(0.2, value_range=(0, 1)),
    "RandomColorDegeneration": lambda: keras.layers.RandomColorDegeneration(0.5, value_range=(0, 1)),
    "RandomContrast": lambda: keras.layers.RandomContrast(0.3, value_range=(0, 1)),
    "RandomCrop": lambda: keras.layers.RandomCrop(6, 6),
    "RandomErasing": lambda: keras.layers.RandomErasing(value_range=(0, 1)),
    "RandomFlip": lambda: keras.layers.RandomFlip(),
    "RandomGaussianBlur": lambda: keras.layers.RandomGaussianBlur(value_range=(0, 1)),
    "RandomGrayscale": lambda: keras.layers.RandomGrayscale(),
    "RandomHue": lambda: keras.layers.RandomHue(0.3, value_range=(0, 1)),
    "RandomInvert": lambda: keras.layers.RandomInvert(value_range=(0, 1)),
    "RandomPerspective": lambda: keras.layers.RandomPerspective(),
    "RandomPosterization": lambda: keras.layers.RandomPosterization(4, value_range=(0, 1)),
    "RandomRotation": lambda: keras.layers.RandomRotation(0.2),
    "RandomSaturation": lambda: keras.layers.RandomSaturation(0.5, value_range=(0, 1)),
    "RandomSharpness": lambda: keras.layers.RandomSharpness(0.5, value_range=(0, 1)),
    "RandomShear": lambda: keras.layers.RandomShear(0.3),
    "RandomTranslation": lambda: keras.layers.RandomTranslation(0.3, 0.3),
    "RandomZoom": lambda: keras.layers.RandomZoom(0.3),
    "Resizing": lambda: keras.layers.Resizing(6, 6),
    "Solarization": lambda: keras.layers.Solarization(0.5, value_range=(0, 1)),
}


def test_every_supported_layer_is_tested():
    assert sorted(SUPPORTED) == sorted(views.SUPPORTED_LAYERS)


@pytest.mark.slow  # Eager image ops: up to 10 s per layer on JAX on a loaded 2-core CPU.
@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_every_supported_layer_makes_the_same_views_from_the_same_seed(name):
    x = images(rows=6, channels=3)
    teacher = image_teacher(channels=3, side=None)
    first, second = (
        TeacherCache.build(teacher, x, augmentation=SUPPORTED[name](), views=2, seed=3).augmented_inputs
        for _ in range(2)
    )
    np.testing.assert_array_equal(first, second)


def test_bad_views_are_refused_and_leave_the_cache_on_disk_intact(tmp_path):
    x = images()
    teacher = image_teacher()
    path = tmp_path / "cache"
    TeacherCache.build(teacher, x, augmentation=augmentation(), views=2, seed=0, path=path)
    before = {name: (path / name).read_bytes() for name in os.listdir(path)}
    refused = [
        (dict(augmentation=augmentation(), views=0), ValueError, r"`views` must be a positive integer.*got 0"),
        (dict(augmentation=augmentation(), views=-2), ValueError, r"positive integer.*got -2"),
        (dict(augmentation=augmentation(), views=2.5), ValueError, r"positive integer.*got 2.5"),
        (dict(augmentation=augmentation(), views=True), ValueError, r"positive integer.*got True"),
        (dict(augmentation=augmentation(), views="4"), ValueError, r"positive integer.*got '4'"),
        (dict(augmentation=augmentation()), ValueError, r"needs `views`"),
        (dict(views=4), ValueError, r"`views=4` needs an `augmentation`"),
        (dict(augmentation=augmentation(), views=2, seed=-1), ValueError, r"`seed` must be None or a non-negative"),
        (dict(augmentation=augmentation(), views=2, view_dtype="int8"), ValueError, r"`view_dtype`.*'int8'"),
        (dict(augmentation=keras.layers.MixUp(), views=2), ValueError, r"MixUp.*mixes each image with another row"),
        (dict(augmentation=keras.layers.CutMix(), views=2), ValueError, r"CutMix.*label is the mix of both labels"),
        (dict(augmentation=keras.layers.RandAugment(), views=2), ValueError, r"RandAugment.*own seed generator"),
        (
            dict(augmentation=keras.Sequential([keras.layers.RandomFlip(), keras.layers.GaussianNoise(0.1)]), views=2),
            ValueError,
            r"GaussianNoise.*Supported layers: CenterCrop, .*RandomRotation, .*RandomTranslation",
        ),
        (dict(augmentation=lambda images: images, views=2), TypeError, r"`augmentation` must be a Keras image"),
    ]
    for arguments, error, message in refused:
        with pytest.raises(error, match=message):
            TeacherCache.build(teacher, x, path=path, overwrite=True, **arguments)
    with pytest.raises(TypeError, match="one array of images"):
        TeacherCache.build(teacher, {"image": x}, augmentation=augmentation(), views=2, path=path, overwrite=True)
    with pytest.raises(ValueError, match=r"needs images: `x` of shape \(rows, height, width, channels\)"):
        TeacherCache.build(
            teacher, x.reshape(ROWS, -1), augmentation=augmentation(), views=2, path=path, overwrite=True
        )
    with pytest.raises(FileExistsError, match="overwrite=True"):
        TeacherCache.build(teacher, x, augmentation=augmentation(), views=2, path=path)
    assert {name: (path / name).read_bytes() for name in os.listdir(path)} == before
    TeacherCache.load(path, augmentation=augmentation(), views=2, seed=0)


def test_a_distiller_that_augments_or_mixes_in_its_step_is_refused_a_cache_of_views():
    x, y = images(), np.zeros(ROWS, int)
    teacher = image_teacher()
    cache = TeacherCache.build(teacher, x, augmentation=augmentation(), views=2, seed=0)
    data = cache.dataset(x, y)
    augmenting = keras_kd.Distiller(teacher, student(), augmentation=augmentation()).compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"holds 2 augmented views per row.*augments every batch again"):
        augmenting.fit(data, verbose=0)
    mixing = keras_kd.FunctionMatchingDistiller(teacher, student(), mixup=1.0).compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"mix of two views is not the mix of their cached outputs"):
        mixing.fit(data, verbose=0)
    with pytest.raises(ValueError, match=r"views per row.*without `augmentation` and `mixup`"):
        TeacherCache.for_distiller(augmenting, x, augmentation=augmentation(), views=2)
    with pytest.raises(TypeError, match="gives its rows from arrays"):
        cache.dataset(ArrayBatches(x, y))
    with pytest.raises(CacheMismatchError, match="not the data the cache was built from"):
        cache.dataset(images(rows=ROWS + 1), np.zeros(ROWS + 1, int))


def test_views_of_several_teachers_hold_each_teachers_outputs_on_every_view():
    x = images(12)
    teachers = [image_teacher(name=f"teacher_{index}") for index in range(2)]
    distiller = keras_kd.Distiller(teachers, student(), temperature=2.0).compile(optimizer="sgd")
    cache = TeacherCache.for_distiller(distiller, x, augmentation=augmentation(), views=2, seed=0)
    assert cache.teacher_logits.shape == (12, 2, 2, CLASSES)  # rows, views, teachers, classes
    for index, teacher in enumerate(teachers):
        for view in range(2):
            np.testing.assert_allclose(
                cache.teacher_logits[:, view, index],
                teacher.predict(cache.augmented_inputs[:, view], verbose=0),
                **TOLERANCE,
            )
    # The views are shared: each teacher's size is its share of the logits.
    assert cache.teacher_nbytes == {"teacher_0": 12 * 2 * CLASSES * 4, "teacher_1": 12 * 2 * CLASSES * 4}
    assert cache.nbytes == sum(cache.teacher_nbytes.values()) + cache.augmented_inputs.nbytes
    history = distiller.fit(cache.dataset(x, np.arange(12) % CLASSES, batch_size=6), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
