"""One catalogue of bad inputs: each ends in a clear error that keras_kd raises.

Every case is `Case(id, trigger, error, fragments, origin)`:

* `trigger`: a callable with no arguments that makes the mistake;
* `error`: the exception type it must raise;
* `fragments`: lowercase pieces of the message: at least one naming the bad
  value and one naming what is valid;
* `origin`: where the exception may be raised (the last frame of its
  traceback): `"keras_kd"` (the default: a file of the package, not deep in
  a backend), `"keras"` (Keras's own argument checks, allowed case by case
  with the reason in a comment), or `"cli"` (the command line: a non-zero
  exit status and one line on stderr, no traceback).

Many of these situations are also tested on their own in the other test
files; this file is the single list. That a failed `Distiller.save` over an
existing good file leaves that file intact is tested in
`test_reliability.py::test_a_plain_python_schedule_is_refused_at_save_and_the_old_file_survives`
(the catalogue keeps the error of that save: "save with a plain Python
schedule").

The models are tiny (Dense layers on 8 features) and built once per module;
fit-time cases get their own fresh models, so that a failure inside a train
step (which on JAX leaves the models' variables emptied) cannot spill over.
"""

import contextlib
import io
import math
import os
import shutil
import types
import typing

import keras
import numpy as np
import pytest

import keras_kd
from conftest import ArrayBatches, make_data, make_mlp
from keras_kd import cli, datasets, losses, tuning
from keras_kd.cache import CacheMismatchError, TeacherCache

PACKAGE_DIR = os.path.dirname(os.path.abspath(keras_kd.__file__))
KERAS_DIR = os.path.dirname(os.path.abspath(keras.__file__))

# The shared models, data and files, filled once by the `world` fixture.
W = types.SimpleNamespace()


class Case(typing.NamedTuple):
    id: str
    trigger: typing.Callable[[], object]
    error: type
    fragments: typing.Sequence[str]
    origin: str = "keras_kd"


class CliFailed(Exception):
    """`cli.main` returned a non-zero status; the message is what it printed on stderr."""

    def __init__(self, status, stderr):
        super().__init__(stderr)
        self.status, self.stderr = status, stderr


@pytest.fixture(scope="module", autouse=True)
def world(tmp_path_factory):
    keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("bad_inputs")
    W.dir = str(directory)
    W.x, W.y = make_data(32)
    W.teacher = make_mlp(16, name="teacher", batchnorm=False)
    W.student = make_mlp(4, name="student", batchnorm=False)
    # Same architecture as the teacher, other weights.
    W.other_teacher = make_mlp(16, name="teacher", batchnorm=False)
    W.image_teacher, W.flat_student = _image_teacher_and_flat_student()
    W.cache = TeacherCache.build(W.teacher, W.x)
    W.cache_dir = os.path.join(W.dir, "cache")
    TeacherCache.build(W.teacher, W.x, path=W.cache_dir)
    W.teacher_file = os.path.join(W.dir, "teacher.keras")
    W.student_file = os.path.join(W.dir, "student.keras")
    W.teacher.save(W.teacher_file)
    W.student.save(W.student_file)
    W.corrupted_file = os.path.join(W.dir, "corrupted.keras")
    with open(W.corrupted_file, "wb") as file:
        file.write(b"not a zip archive")
    W.truncated_file = os.path.join(W.dir, "truncated_distiller.keras")
    keras_kd.Distiller(W.teacher, W.student).save(W.truncated_file)
    with open(W.truncated_file, "rb") as file:
        good = file.read()
    with open(W.truncated_file, "wb") as file:
        file.write(good[: len(good) // 2])
    yield W


def _image_teacher_and_flat_student():
    inputs = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(2, 1, name="teacher_conv")(inputs)
    teacher = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(conv)), name="image_teacher")
    inputs = keras.Input((4, 4, 1))
    hidden = keras.layers.Dense(4, name="student_flat_hidden")(keras.layers.Flatten()(inputs))
    student = keras.Model(inputs, keras.layers.Dense(3)(hidden), name="flat_student")
    return teacher, student


# ------------------------------------------------------------------ triggers


def distiller(teacher=None, student=None, **kwargs):
    return keras_kd.Distiller(teacher or W.teacher, student or W.student, **kwargs)


def deep_mlp():
    """8 -> 16 -> 16 -> 16 -> 3: the two middle Dense layers can be dropped."""
    return keras.Sequential(
        [keras.Input((8,))]
        + [keras.layers.Dense(16, activation="relu", name=f"deep_{i}") for i in range(3)]
        + [keras.layers.Dense(3, name="deep_logits")]
    )


def mistral_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    return keras_hub.models.MistralBackbone(
        vocabulary_size=32, num_layers=2, num_query_heads=2, num_key_value_heads=1, hidden_dim=8, intermediate_dim=16
    )


def hidden(model):
    """The name of the hidden Dense layer of a `make_mlp` model."""
    return model.layers[1].name


def fit(y, x=None, alpha=0.5, method="fit"):
    """Fits (or evaluates) a Distiller of fresh tiny models on `x` (default W.x) and `y`."""
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = make_mlp(4, name="student", batchnorm=False)
    model = keras_kd.Distiller(teacher, student, alpha=alpha).compile(optimizer="sgd")
    return getattr(model, method)(W.x if x is None else x, y, verbose=0)


def fit_dataset_with_bad_labels():
    # The first batch of a PyDataset is checked before training starts.
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = make_mlp(4, name="student", batchnorm=False)
    model = keras_kd.Distiller(teacher, student, alpha=0.5).compile(optimizer="sgd")
    model.fit(ArrayBatches(W.x, np.zeros((32, 2), "float32")), epochs=1, verbose=0)


def five_class_distiller(**kwargs):
    """A Distiller of fresh tiny models with 5 classes (the issue's example)."""
    teacher = make_mlp(16, num_classes=5, name="teacher", batchnorm=False)
    student = make_mlp(4, num_classes=5, name="student", batchnorm=False)
    return keras_kd.Distiller(teacher, student, **{"alpha": 0.5, **kwargs}).compile(optimizer="sgd")


def labels_with(value, row=20):
    """32 labels of class 0, except `value` at `row` (row 20 is in the third batch of 8)."""
    labels = np.zeros(32, "int64")
    labels[row] = value
    return labels


def tf_dataset(*arrays, batch_size=8):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
    return dataset if batch_size is None else dataset.batch(batch_size)


def batches(x, y=None, batch_size=8):
    """A generator of batches, as users write one."""
    for start in range(0, len(x), batch_size):
        rows = slice(start, start + batch_size)
        yield x[rows] if y is None else (x[rows], y[rows])


def named_input_distiller():
    """A Distiller whose models take a dict {"features": rows}."""

    def model(hidden, name):
        inputs = keras.Input((8,), name="features")
        outputs = keras.layers.Dense(5)(keras.layers.Dense(hidden, activation="relu")(inputs))
        return keras.Model(inputs, outputs, name=name)

    return keras_kd.Distiller(model(16, "teacher"), model(4, "student"), alpha=0.5).compile(optimizer="sgd")


def fit_generator(data, **kwargs):
    return five_class_distiller(**kwargs).fit(data, steps_per_epoch=4, verbose=0)


def fit_cached_with_labels(labels):
    student = make_mlp(4, name="student", batchnorm=False)
    model = keras_kd.Distiller(W.teacher, student, alpha=0.5).compile(optimizer="sgd")
    model.fit(W.cache.dataset(W.x, labels, batch_size=8), verbose=0)


def polynomial(initial, steps, end):
    return keras.optimizers.schedules.PolynomialDecay(initial, steps, end_learning_rate=end)


def fit_other_teacher_on_cache():
    distiller(teacher=W.other_teacher).compile(optimizer="sgd").fit(W.cache.dataset(W.x, W.y), verbose=0)


def fit_function_matching_on_cache():
    matcher = keras_kd.FunctionMatchingDistiller(W.teacher, W.student, mixup=1.0, seed=0)
    matcher.compile(optimizer="sgd").fit(W.cache.dataset(W.x), verbose=0)


def fit_feature_match_on_logits_cache():
    match = keras_kd.FeatureMatch(hidden(W.teacher), hidden(W.student))
    distiller(feature_matches=[match]).compile(optimizer="sgd").fit(W.cache.dataset(W.x, W.y), verbose=0)


def load_truncated_cache():
    copy = os.path.join(W.dir, f"truncated_cache_{os.getpid()}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(W.cache_dir, copy)
    logits_file = os.path.join(copy, "000.npy")
    with open(logits_file, "rb") as file:
        data = file.read()
    with open(logits_file, "wb") as file:
        file.write(data[:-12])
    return TeacherCache.load(copy)


def changed_rows():
    changed = W.x.copy()
    changed[5] += 1.0
    return changed


def hypermodel(**options):
    options = {"temperatures": [2.0], "alphas": [0.5], "epochs": 1, "batch_size": 32, **options}
    builder = options.pop("student_builder", lambda: make_mlp(4, name="student", batchnorm=False))
    train = options.pop("train_data", make_data(64, seed=1))
    return tuning.DistillationHyperModel(W.teacher, builder, train, make_data(32, seed=2), **options)


def save_with_a_python_schedule():
    path = os.path.join(W.dir, "schedule.keras")
    distiller(temperature=lambda step: 4.0).compile(optimizer="sgd").save(path)


def run_cli(*argv):
    """Runs `keras-kd` in this process; raises CliFailed(status, stderr) on a non-zero status."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = cli.main(list(argv))
        except SystemExit as exit_:  # argparse exits on bad option values.
            status = exit_.code
    if status != 0:
        raise CliFailed(status, stderr.getvalue())
    return stdout.getvalue()


def distill(*extra):
    """`keras-kd distill` with good files and options, then `extra` (later options win)."""
    output = os.path.join(W.dir, "cli_student.keras")
    return run_cli(
        "distill",
        "--teacher", W.teacher_file,
        "--student", W.student_file,
        "--dataset", "digits",
        "--limit", "32",
        "--epochs", "1",
        "--output", output,
        "--quiet",
        *extra,
    )  # fmt: skip


LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], "float32")
FOUR_CLASS_LOGITS = np.zeros((2, 4), "float32")

# ------------------------------------------------------------------ the catalogue

CATALOGUE = [
    # ---- keras_kd.Distiller: hyperparameters
    Case(
        "distiller temperature str",
        lambda: distiller(temperature="4"),
        TypeError,
        ["got '4' of type str", "a real number"],
    ),
    Case(
        "distiller temperature bool",
        lambda: distiller(temperature=True),
        TypeError,
        ["got true of type bool", "a real number"],
    ),
    Case("distiller temperature zero", lambda: distiller(temperature=0.0), ValueError, ["got 0.0", "must be > 0"]),
    Case("distiller temperature negative", lambda: distiller(temperature=-2), ValueError, ["got -2.0", "must be > 0"]),
    Case(
        "distiller temperature nan", lambda: distiller(temperature=math.nan), ValueError, ["got nan", "must be finite"]
    ),
    Case(
        "distiller temperature inf", lambda: distiller(temperature=math.inf), ValueError, ["got inf", "must be finite"]
    ),
    Case(
        "distiller alpha None", lambda: distiller(alpha=None), TypeError, ["got none of type nonetype", "a real number"]
    ),
    Case("distiller alpha above 1", lambda: distiller(alpha=1.5), ValueError, ["got 1.5", "must be in [0, 1]"]),
    Case("distiller alpha negative", lambda: distiller(alpha=-0.1), ValueError, ["got -0.1", "must be in [0, 1]"]),
    Case("distiller alpha nan", lambda: distiller(alpha=math.nan), ValueError, ["got nan", "`alpha` must be finite"]),
    Case("distiller alpha inf", lambda: distiller(alpha=-math.inf), ValueError, ["got -inf", "`alpha` must be finite"]),
    Case(
        "distiller alpha schedule out of range",
        lambda: distiller(alpha=lambda step: 2.0 + step),
        ValueError,
        ["`alpha(step=0)`", "got 2.0", "in [0, 1]"],
    ),
    Case(
        "distiller loss string",
        lambda: distiller(distillation_loss="kl_divergence"),
        TypeError,
        ["got 'kl_divergence'", "keras_kd.losses.softtargetkl()"],
    ),
    # ---- keras_kd.Distiller: models
    Case(
        "teacher is the student",
        lambda: distiller(student=W.teacher),
        ValueError,
        ["same model object", "keras.models.clone_model(teacher)"],
    ),
    Case(
        "teacher not a model",
        lambda: distiller(teacher="teacher.keras"),
        TypeError,
        ["got 'teacher.keras' of type str", "must be a keras.model"],
    ),
    Case(
        "student not a model",
        lambda: distiller(student=lambda x: x),
        TypeError,
        ["of type function", "`student` must be a keras.model"],
    ),
    Case(
        "class counts differ",
        lambda: distiller(student=make_mlp(4, num_classes=5)),
        ValueError,
        ["student outputs (none, 5)", "a last layer of 3 units"],
    ),
    Case(
        "input shapes differ",
        lambda: distiller(student=make_mlp(4, input_dim=6)),
        ValueError,
        ["student takes [(none, 6)]", "input shapes must match"],
    ),
    Case(
        "teacher ends in softmax",
        lambda: distiller(teacher=keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])),
        ValueError,
        ["ends in a softmax", "activation=none on the last layer"],
    ),
    # ---- keras_kd.Distiller / FunctionMatchingDistiller: mixup and augmentation
    Case("mixup negative", lambda: distiller(mixup=-0.5), ValueError, ["got -0.5", "`mixup` must be >= 0"]),
    Case("mixup str", lambda: distiller(mixup="strong"), TypeError, ["got 'strong'", "`mixup` must be a real number"]),
    Case("mixup inf", lambda: distiller(mixup=math.inf), ValueError, ["got inf", "`mixup` must be finite"]),
    Case(
        "augmentation str",
        lambda: distiller(augmentation="flip"),
        TypeError,
        ["got 'flip'", "none or a keras.layers.layer"],
    ),
    Case(
        "function matching without transforms",
        lambda: keras_kd.FunctionMatchingDistiller(W.teacher, W.student, mixup=0.0),
        ValueError,
        ["got augmentation=none and mixup=0.0", "an `augmentation` layer, a `mixup` concentration > 0"],
    ),
    # ---- Distiller.compile
    Case(
        "hard loss unknown string",
        lambda: distiller().compile(optimizer="sgd", loss="kl_divergence"),
        ValueError,
        ["'kl_divergence'", "valid strings"],
    ),
    Case(
        "hard loss on probabilities",
        lambda: distiller().compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy()),
        ValueError,
        ["from_logits=false", "pass from_logits=true"],
    ),
    # ---- Distiller.fit / evaluate: data
    Case(
        "labels missing with alpha < 1",
        lambda: fit(None),
        ValueError,
        ["labels are missing, but alpha=0.5", "pass y to fit()", "alpha=1.0"],
    ),
    Case(
        "labels of the wrong shape",
        lambda: fit(np.zeros((32, 2), "float32")),
        ValueError,
        ["labels of shape (32, 2)", "class ids of shape (32,)", "one-hot rows of shape (32, 3)"],
    ),
    Case(
        "labels of dtype bool",
        lambda: fit(np.zeros(32, bool)),
        TypeError,
        ["dtype bool", "integer class ids or one-hot floats"],
    ),
    Case(
        "labels of dtype str",
        lambda: fit(np.array(["cat"] * 32)),
        TypeError,
        ["dtype <u3", "integer class ids or one-hot floats"],
    ),
    Case(
        "labels beyond the classes",
        lambda: fit(np.full(32, 5)),
        ValueError,
        ["label 5 is not a class id", "integers 0 to 2"],
    ),
    Case(
        "labels not whole numbers",
        lambda: fit(np.full(32, 0.5, "float32")),
        ValueError,
        ["label 0.5", "integers 0 to 2"],
    ),
    Case(
        "evaluate labels beyond the classes",
        lambda: fit(np.full(32, 3), method="evaluate"),
        ValueError,
        ["label 3", "integers 0 to 2"],
    ),
    Case(
        "inputs of the wrong shape",
        lambda: fit(W.y, x=W.x[:, :5]),
        ValueError,
        ["inputs have shape (32, 5)", "rows of shape (8,)"],
    ),
    # Keras's own check of the data's row counts, reached through Distiller.fit
    # before any step runs; its message names both sizes.
    Case(
        "labels of another length",
        lambda: fit(W.y[:10]),
        ValueError,
        ["'y' sizes: 10", "same number of samples"],
        origin="keras",
    ),
    Case(
        "labels of the wrong shape in a dataset",
        fit_dataset_with_bad_labels,
        ValueError,
        ["labels of shape (", ", 2) do not fit", "class ids of shape ("],
    ),
    # ---- Distiller.fit: every form of data (issue 18). A bad label in a
    # later batch is found before its step; the rest before training.
    Case(
        "tf.data labels beyond the classes",
        lambda: five_class_distiller().fit(tf_dataset(W.x, labels_with(9)), verbose=0),
        ValueError,
        ["label 9 is not a class id of the student's 5 classes", "integers 0 to 4"],
    ),
    Case(
        "tf.data labels beyond the classes in the first batch",
        lambda: five_class_distiller().fit(tf_dataset(W.x, labels_with(9, row=0)), verbose=0),
        ValueError,
        ["label 9 is not a class id", "integers 0 to 4"],
    ),
    Case(
        # Compiled steps (XLA on TensorFlow and JAX) see only checked batches;
        # the first batch is bad, so that PyTorch compiles nothing.
        "tf.data labels beyond the classes under jit_compile",
        lambda: (
            five_class_distiller()
            .compile(optimizer="sgd", jit_compile=True)
            .fit(tf_dataset(W.x, labels_with(9, row=0)), verbose=0)
        ),
        ValueError,
        ["label 9 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "tf.data labels of the wrong shape",
        lambda: five_class_distiller().fit(tf_dataset(W.x, np.zeros((32, 2), "int64")), verbose=0),
        ValueError,
        ["labels of shape (none, 2)", "class ids of shape (none,)"],
    ),
    Case(
        "tf.data labels of dtype string",
        lambda: five_class_distiller().fit(tf_dataset(W.x, np.array(["cat"] * 32)), verbose=0),
        TypeError,
        ["dtype string", "integer class ids or one-hot floats"],
    ),
    Case(
        "tf.data not batched",
        lambda: five_class_distiller().fit(tf_dataset(W.x, W.y, batch_size=None), verbose=0),
        ValueError,
        ["inputs have shape (8,)", "rows of shape (8,)", "batch them"],
    ),
    Case(
        "tf.data without labels while alpha < 1",
        lambda: five_class_distiller().fit(tf_dataset(W.x), verbose=0),
        ValueError,
        ["labels are missing, but alpha=0.5", "pass y to fit()"],
    ),
    Case(
        "PyDataset labels beyond the classes in a later batch",
        lambda: five_class_distiller().fit(ArrayBatches(W.x, labels_with(9, row=30)), verbose=0),
        ValueError,
        ["label 9 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "PyDataset labels beyond the classes in the first batch",
        lambda: five_class_distiller().fit(ArrayBatches(W.x, labels_with(5, row=1)), verbose=0),
        ValueError,
        ["label 5 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "PyDataset evaluate labels beyond the classes",
        lambda: five_class_distiller().evaluate(ArrayBatches(W.x, labels_with(7, row=30)), verbose=0),
        ValueError,
        ["label 7 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "validation tf.data labels beyond the classes",
        lambda: five_class_distiller().fit(W.x, W.y, validation_data=tf_dataset(W.x, labels_with(9)), verbose=0),
        ValueError,
        ["label 9 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "validation arrays labels beyond the classes",
        lambda: five_class_distiller().fit(W.x, W.y, validation_data=(W.x, labels_with(6)), verbose=0),
        ValueError,
        ["label 6 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "generator labels beyond the classes in a later batch",
        lambda: fit_generator(batches(W.x, labels_with(9))),
        ValueError,
        ["label 9 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "generator labels not whole numbers",
        lambda: fit_generator(batches(W.x, np.full(32, 0.5, "float32"))),
        ValueError,
        ["label 0.5", "integers 0 to 4"],
    ),
    Case(
        "generator inputs of the wrong shape",
        lambda: fit_generator(batches(W.x[:, :5], W.y)),
        ValueError,
        ["inputs have shape (8, 5)", "rows of shape (8,)"],
    ),
    Case(
        "generator without labels while alpha < 1",
        lambda: fit_generator(batches(W.x)),
        ValueError,
        ["labels are missing, but alpha=0.5", "pass y to fit()"],
    ),
    Case(
        "dict inputs with other keys",
        lambda: named_input_distiller().fit({"pixels": W.x}, W.y, verbose=0),
        ValueError,
        ["a dict with keys ['pixels']", "inputs named ['features']", "exactly those keys"],
    ),
    Case(
        "dict inputs of the wrong shape",
        lambda: named_input_distiller().fit({"features": W.x[:, :5]}, W.y, verbose=0),
        ValueError,
        ["inputs 'features' have shape (32, 5)", "rows of shape (8,)"],
    ),
    Case(
        "dict labels beyond the classes",
        lambda: named_input_distiller().fit({"features": W.x}, labels_with(9), verbose=0),
        ValueError,
        ["label 9 is not a class id", "integers 0 to 4"],
    ),
    Case(
        "cached dataset labels beyond the classes",
        lambda: fit_cached_with_labels(labels_with(5)),
        ValueError,
        ["label 5 is not a class id of the student's 3 classes", "integers 0 to 2"],
    ),
    # ---- schedules that leave their valid range (issue 18): refused before
    # training when the fit's length is known, else before the step.
    Case(
        "temperature schedule reaching 0",
        lambda: five_class_distiller(temperature=polynomial(1.0, 2, -1.0)).fit(
            W.x, W.y, batch_size=8, epochs=2, verbose=0
        ),
        ValueError,
        ["at training step 1", "`temperature(step=1)` must be > 0", "got 0.0"],
    ),
    Case(
        "temperature schedule reaching 0 on a generator",
        lambda: five_class_distiller(temperature=polynomial(1.0, 2, -1.0)).fit(batches(W.x, W.y), verbose=0),
        ValueError,
        ["at training step 1", "`temperature(step=1)` must be > 0", "got 0.0"],
    ),
    Case(
        "temperature schedule not finite",
        lambda: fit_generator(batches(W.x, W.y), temperature=lambda step: 4.0 + 0.0 * keras.ops.log(2.0 - step)),
        ValueError,
        ["at training step 2", "`temperature(step=2)` must be finite", "got nan"],
    ),
    Case(
        "temperature schedule with ops.cond",
        lambda: fit_generator(
            batches(W.x, W.y), temperature=lambda step: keras.ops.cond(step < 3, lambda: 2.0, lambda: -1.0)
        ),
        ValueError,
        ["at training step 3", "`temperature(step=3)` must be > 0", "got -1.0"],
    ),
    Case(
        "alpha schedule above 1",
        lambda: five_class_distiller(alpha=polynomial(0.5, 4, 1.5)).fit(W.x, W.y, batch_size=8, verbose=0),
        ValueError,
        ["at training step 3", "`alpha(step=3)` must be in [0, 1]", "got 1.25"],
    ),
    # ---- keras_kd.losses
    Case(
        "soft_target_kl temperature zero",
        lambda: losses.soft_target_kl(LOGITS, LOGITS, 0.0),
        ValueError,
        ["got 0.0", "must be > 0"],
    ),
    Case(
        "soft_target_kl temperature negative",
        lambda: losses.soft_target_kl(LOGITS, LOGITS, -1),
        ValueError,
        ["got -1.0", "must be > 0"],
    ),
    Case(
        "soft_target_kl temperature nan",
        lambda: losses.soft_target_kl(LOGITS, LOGITS, math.nan),
        ValueError,
        ["got nan", "must be finite"],
    ),
    Case(
        "SoftTargetKL temperature str",
        lambda: losses.SoftTargetKL()(LOGITS, LOGITS, "4"),
        TypeError,
        ["got '4' of type str", "must be a real number"],
    ),
    Case(
        "DecoupledKD temperature zero",
        lambda: losses.DecoupledKD()(LOGITS, LOGITS, 0),
        ValueError,
        ["got 0.0", "must be > 0"],
    ),
    Case(
        "decoupled_kd temperature None",
        lambda: losses.decoupled_kd(LOGITS, LOGITS, None),
        TypeError,
        ["got none", "must be a real number"],
    ),
    Case(
        "soft_target_kl shapes differ",
        lambda: losses.soft_target_kl(LOGITS, FOUR_CLASS_LOGITS, 4.0),
        ValueError,
        ["teacher (2, 3) and student (2, 4)", "same shape"],
    ),
    Case(
        "decoupled_kd shapes differ",
        lambda: losses.decoupled_kd(LOGITS, FOUR_CLASS_LOGITS, 4.0),
        ValueError,
        ["teacher (2, 3) and student (2, 4)", "same shape"],
    ),
    Case(
        "SoftTargetKL shapes differ",
        lambda: losses.SoftTargetKL()(FOUR_CLASS_LOGITS, LOGITS, 4.0),
        ValueError,
        ["teacher (2, 4) and student (2, 3)", "same shape"],
    ),
    Case(
        "hint_mse shapes differ",
        lambda: losses.hint_mse(np.zeros((2, 4)), np.zeros((2, 3))),
        ValueError,
        ["teacher (2, 4) and student (2, 3)", "same shape"],
    ),
    Case(
        "label_cross_entropy shapes differ",
        lambda: losses.label_cross_entropy(np.zeros((2, 2)), LOGITS),
        ValueError,
        ["labels of shape (2, 2)", "class ids of shape (2,)"],
    ),
    Case(
        "DecoupledKD beta str",
        lambda: losses.DecoupledKD(beta="8"),
        TypeError,
        ["got '8'", "`beta` must be a real number"],
    ),
    Case(
        "DecoupledKD warmup fractional",
        lambda: losses.DecoupledKD(warmup_steps=1.5),
        ValueError,
        ["got 1.5", "an integer >= 0"],
    ),
    Case("AttentionTransfer p below 1", lambda: losses.AttentionTransfer(p=0.5), ValueError, ["0.5", "must be >= 1"]),
    # ---- keras_kd.FeatureMatch
    Case(
        "feature match missing layer",
        lambda: distiller(feature_matches=[keras_kd.FeatureMatch("missing", hidden(W.student))]),
        ValueError,
        ["no layer named 'missing'", "its layers:"],
    ),
    Case(
        "feature match path into a layer",
        lambda: distiller(feature_matches=[keras_kd.FeatureMatch(f"{hidden(W.teacher)}/kernel", hidden(W.student))]),
        ValueError,
        ["goes inside '", "not a functional model", "name that layer itself"],
    ),
    Case(
        "feature match name with a slash",
        lambda: keras_kd.FeatureMatch("a", "b", name="hidden/0"),
        ValueError,
        ["got 'hidden/0'", "without '/'"],
    ),
    # ---- keras_kd.students and keras_kd.pruning
    Case(
        "student keep_layers out of range",
        lambda: keras_kd.students.from_teacher(deep_mlp(), keep_layers=[5]),
        ValueError,
        ["keep_layers=[5]", "out of range", "indexed 0 to 1"],
    ),
    Case(
        "student keep_layers empty",
        lambda: keras_kd.students.from_teacher(deep_mlp(), keep_layers=[]),
        ValueError,
        ["keep_layers=[]", "keeps from 1 to 1"],
    ),
    Case(
        "student of a family that cannot be shrunk",
        lambda: keras_kd.students.from_teacher(mistral_backbone(), num_layers=1),
        TypeError,
        ["kerashub mistralbackbone", "cannot shrink", "gpt-2, llama"],
    ),
    Case(
        "pruned width not narrower",
        lambda: keras_kd.pruning.prune_width(deep_mlp(), W.x, units={"deep_1": 16}),
        ValueError,
        ["16", "[1, 15]"],
    ),
    Case(
        "feature match negative weight",
        lambda: keras_kd.FeatureMatch("a", "b", weight=-1),
        ValueError,
        ["got -1", "must be >= 0"],
    ),
    Case(
        "feature match weight str",
        lambda: keras_kd.FeatureMatch("a", "b", weight="heavy"),
        TypeError,
        ["got 'heavy'", "`weight` must be a real number;"],
    ),
    Case(
        "feature match unknown loss",
        lambda: keras_kd.FeatureMatch("a", "b", loss="l7"),
        ValueError,
        ["unknown feature loss 'l7'", "valid strings: ['attention', 'cosine'"],
    ),
    Case(
        "feature match layer not a name",
        lambda: keras_kd.FeatureMatch(3, "b"),
        TypeError,
        ["got 3", "a layer name or a keras.layers.layer"],
    ),
    Case(
        "feature match bad adapter",
        lambda: keras_kd.FeatureMatch("a", "b", adapter="dense"),
        ValueError,
        ["got 'dense'", "'auto', none or a keras.layers.layer"],
    ),
    Case(
        "feature matches not FeatureMatch",
        lambda: distiller(feature_matches=[("a", "b")]),
        TypeError,
        ["got ('a', 'b')", "a list of keras_kd.featurematch"],
    ),
    Case(
        "feature match shapes differ without adapter",
        lambda: distiller(feature_matches=[keras_kd.FeatureMatch(hidden(W.teacher), hidden(W.student), adapter=None)]),
        ValueError,
        ["(none, 4) and the teacher feature (none, 16) differ, and adapter=none", "adapter='auto'"],
    ),
    Case(
        "feature match shape cannot be adapted",
        lambda: keras_kd.Distiller(
            W.image_teacher,
            W.flat_student,
            feature_matches=[keras_kd.FeatureMatch("teacher_conv", "student_flat_hidden")],
        ),
        ValueError,
        [
            "student feature of shape (none, 4) to the teacher feature of shape (none, 4, 4, 2)",
            "pass your own keras layer as `adapter`",
        ],
    ),
    # ---- keras_kd.TeacherCache
    Case(
        "cache of another teacher",
        fit_other_teacher_on_cache,
        CacheMismatchError,
        ["teacher with other weights", "rebuild it with keras_kd.teachercache.build"],
    ),
    Case(
        "cache of other data",
        lambda: W.cache.dataset(changed_rows(), W.y),
        CacheMismatchError,
        ["rows [5] changed", "pass the original data in the original order"],
    ),
    Case(
        "cache without the matched features",
        fit_feature_match_on_logits_cache,
        CacheMismatchError,
        ["teacher layers ['dense", "teachercache.for_distiller"],
    ),
    Case(
        "cache file truncated",
        load_truncated_cache,
        ValueError,
        ["000.npy", "the file is truncated", "rebuild the cache"],
    ),
    Case(
        "cache directory missing",
        lambda: TeacherCache.load(os.path.join(W.dir, "no_cache")),
        FileNotFoundError,
        ["no teacher cache at", "teachercache.build(teacher, x, path=...)"],
    ),
    Case(
        "cache of an augmented pipeline",
        lambda: TeacherCache.build(W.teacher, ArrayBatches(W.x, W.y, noise=0.1)),
        ValueError,
        ["different first batch when read twice", "cache the data without augmentation"],
    ),
    Case(
        "cache for a function-matching distiller",
        lambda: TeacherCache.for_distiller(keras_kd.FunctionMatchingDistiller(W.teacher, W.student, seed=0), W.x),
        ValueError,
        ["transforms its inputs inside the training step", "train it without a cache"],
    ),
    Case(
        "cached data given to function matching",
        fit_function_matching_on_cache,
        ValueError,
        ["transforms its inputs", "train it without a cache"],
    ),
    Case(
        "cache batch size zero",
        lambda: TeacherCache.build(W.teacher, W.x, batch_size=0),
        ValueError,
        ["got 0", "a positive integer"],
    ),
    # ---- keras_kd.datasets
    Case(
        "dataset unknown",
        lambda: datasets.load("imagenet"),
        ValueError,
        ["unknown dataset 'imagenet'", "valid names: mnist", "digits"],
    ),
    Case(
        "dataset split unknown",
        lambda: datasets.load("digits", "validation"),
        ValueError,
        ["got split='validation'", "splits ('train', 'test')"],
    ),
    Case(
        "dataset augmentation unknown",
        lambda: datasets.augmentation("imagenet"),
        ValueError,
        ["'imagenet'", "valid names"],
    ),
    # ---- keras_kd.tuning
    Case(
        "tuning temperature zero",
        lambda: hypermodel(temperatures=[0.0, 2.0]),
        ValueError,
        ["`temperatures[0]` must be > 0", "got 0.0"],
    ),
    Case(
        "tuning alpha above 1",
        lambda: hypermodel(alphas=[0.5, 1.5]),
        ValueError,
        ["`alphas[1]`", "got 1.5", "in [0, 1]"],
    ),
    Case(
        "tuning temperatures str",
        lambda: hypermodel(temperatures="4"),
        TypeError,
        ["got '4' of type str", "a list of numbers or a keras_kd.tuning.range"],
    ),
    Case("tuning empty space", lambda: hypermodel(alphas=[]), ValueError, ["`alphas` is empty", "at least one value"]),
    Case(
        "tuning range reversed",
        lambda: hypermodel(temperatures=tuning.Range(5.0, 1.0)),
        ValueError,
        ["min_value=5.0, max_value=1.0", "min_value must be < max_value"],
    ),
    Case(
        "tuning range sampling",
        lambda: hypermodel(temperatures=tuning.Range(1.0, 5.0, "exp")),
        ValueError,
        ["got 'exp'", "'linear' or 'log'"],
    ),
    Case(
        "tuning learning rate zero",
        lambda: hypermodel(learning_rate=0.0),
        ValueError,
        ["`learning_rate` must be > 0", "got 0.0"],
    ),
    Case(
        "tuning temperature decay",
        lambda: hypermodel(temperature_decay="yes"),
        ValueError,
        ["got 'yes'", "false, true or 'tune'"],
    ),
    Case(
        "tuning builder is a model",
        lambda: hypermodel(student_builder=W.student),
        TypeError,
        ["of type functional", "a callable with no arguments"],
    ),
    Case(
        "tuning data lengths differ",
        lambda: hypermodel(train_data=(W.x, W.y[:10])),
        ValueError,
        ["32 inputs and 10 labels", "as many labels as inputs"],
    ),
    Case(
        "tuning unknown tuner",
        lambda: tuning.make_tuner("optuna", None),
        ValueError,
        ["unknown tuner 'optuna'", "valid: grid, random, bayesian, hyperband"],
    ),
    # ---- the command line
    Case(
        "cli missing teacher file",
        lambda: distill("--teacher", os.path.join(W.dir, "missing.keras")),
        CliFailed,
        ["missing.keras'", "no such file"],
        origin="cli",
    ),
    Case(
        "cli corrupted teacher file",
        lambda: distill("--teacher", W.corrupted_file),
        CliFailed,
        ["corrupted.keras'", "not a .keras archive"],
        origin="cli",
    ),
    Case(
        "cli unknown dataset",
        lambda: distill("--dataset", "imagenet"),
        CliFailed,
        ["unknown dataset 'imagenet'", "digits"],
        origin="cli",
    ),
    Case(
        "cli temperature zero",
        lambda: distill("--temperature", "0"),
        CliFailed,
        ["--temperature", "got '0'", "must be > 0"],
        origin="cli",
    ),
    Case(
        "cli temperature nan",
        lambda: distill("--temperature", "nan"),
        CliFailed,
        ["--temperature", "got 'nan'", "must be finite"],
        origin="cli",
    ),
    Case(
        "cli alpha above 1",
        lambda: distill("--alpha", "1.5"),
        CliFailed,
        ["--alpha", "got '1.5'", "must be in [0, 1]"],
        origin="cli",
    ),
    Case(
        "cli alpha not a number",
        lambda: distill("--alpha", "high"),
        CliFailed,
        ["--alpha", "got 'high'", "must be a number"],
        origin="cli",
    ),
    Case(
        "cli output not .keras",
        lambda: distill("--output", os.path.join(W.dir, "student.h5")),
        CliFailed,
        ["student.h5'", "must end in .keras"],
        origin="cli",
    ),
    # ---- saving and loading
    # keras.saving.load_model is Keras's own function: it refuses a file that
    # is not a zip archive itself, naming the file and what it should be.
    Case(
        "load a corrupted .keras file",
        lambda: keras.saving.load_model(W.corrupted_file),
        ValueError,
        ["corrupted.keras", "an accessible `.keras` zip file"],
        origin="keras",
    ),
    Case(
        "load a truncated Distiller .keras file",
        lambda: keras.saving.load_model(W.truncated_file),
        ValueError,
        ["truncated_distiller.keras", "an accessible `.keras` zip file"],
        origin="keras",
    ),
    Case(
        "save with a plain Python schedule",
        save_with_a_python_schedule,
        ValueError,
        ["is a plain python callable", "register_keras_serializable"],
    ),
]


def _raising_file(error):
    """The file of the frame that raised `error` (the last frame of its traceback)."""
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return os.path.abspath(traceback.tb_frame.f_code.co_filename)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CATALOGUE])
def test_bad_input_gives_a_clear_error(case):
    with pytest.raises(Exception) as caught:
        case.trigger()
    error = caught.value
    assert type(error) is case.error, f"{type(error).__name__}: {error}"
    message = str(error).lower()
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in {str(error)!r}"
    if case.origin == "cli":
        assert error.status == cli.USAGE_ERROR_STATUS
        assert "traceback" not in message
        lines = error.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("keras-kd") and ": error: " in lines[0], error.stderr
        return
    raised_in = _raising_file(error)
    allowed = {"keras_kd": PACKAGE_DIR, "keras": KERAS_DIR}[case.origin]
    assert raised_in.startswith(allowed + os.sep), f"raised in {raised_in}, not under {allowed}: {error}"


def test_the_catalogue_has_at_least_30_distinct_cases():
    ids = [case.id for case in CATALOGUE]
    print(f"{len(CATALOGUE)} bad-input cases")
    assert len(set(ids)) == len(ids), "case ids repeat"
    assert all(len(case.fragments) >= 2 and case.origin in ("keras_kd", "keras", "cli") for case in CATALOGUE)
    assert len(CATALOGUE) >= 30, len(CATALOGUE)


# ------------------------------------------------------------------ after a refused fit (issue 18)


@keras.saving.register_keras_serializable(package="keras_kd_tests")
class _LossRefusedInTheStep(keras_kd.losses.SoftTargetKL):
    """Raises the first time the train step is traced or run (after Keras has built the optimizer), then works."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.refusals = 1

    def call(self, teacher_logits, student_logits, temperature, step=None):
        if self.refusals:
            self.refusals -= 1
            raise ValueError("refused inside the step")
        return super().call(teacher_logits, student_logits, temperature, step=step)


def _failing_fits():
    """(id, make_distiller, bad_fit): each `bad_fit(distiller)` raises ValueError."""
    schedule = lambda: polynomial(1.0, 2, -1.0)  # noqa: E731
    return [
        # The first step's batch (on JAX the step would have detached the variables).
        (
            "tf.data first batch",
            five_class_distiller,
            lambda d: d.fit(tf_dataset(W.x, labels_with(9, row=0)), verbose=0),
        ),
        ("tf.data later batch", five_class_distiller, lambda d: d.fit(tf_dataset(W.x, labels_with(9)), verbose=0)),
        (
            "PyDataset first batch",
            five_class_distiller,
            lambda d: d.fit(ArrayBatches(W.x, labels_with(9, row=0)), verbose=0),
        ),
        ("generator later batch", five_class_distiller, lambda d: d.fit(batches(W.x, labels_with(9)), verbose=0)),
        (
            "evaluate later batch",
            five_class_distiller,
            lambda d: d.evaluate(ArrayBatches(W.x, labels_with(9, row=30)), verbose=0),
        ),
        (
            "an error inside the first step, with optimizer slots",
            lambda: five_class_distiller(distillation_loss=_LossRefusedInTheStep()).compile(optimizer="adam"),
            lambda d: d.fit(W.x, W.y, batch_size=8, verbose=0),
        ),
        (
            "temperature schedule at a step",
            lambda: five_class_distiller(temperature=schedule()),
            lambda d: d.fit(batches(W.x, W.y), verbose=0),
        ),
    ]


@pytest.mark.parametrize("make_distiller, bad_fit", [pytest.param(m, f, id=i) for i, m, f in _failing_fits()])
def test_after_a_refused_fit_the_distiller_trains_and_saves(make_distiller, bad_fit, tmp_path):
    distiller_ = make_distiller()
    before = [weight.copy() for weight in distiller_.student.get_weights()]
    with pytest.raises(ValueError):
        bad_fit(distiller_)
    # The variables hold values (not emptied ones reading as initializers).
    after_error = distiller_.student.get_weights()
    if distiller_.optimizer.iterations.numpy() == 0:
        for old, new in zip(before, after_error):
            np.testing.assert_array_equal(old, new)
    distiller_.evaluate(W.x, W.y, verbose=0)
    if distiller_.step_checks.schedules:
        # The schedule stays refused from the step it was refused at: a new
        # optimizer starts again at step 0, where it is valid.
        distiller_.compile(optimizer="sgd")
    history = distiller_.fit(W.x, W.y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert any(not np.allclose(a, b) for a, b in zip(after_error, distiller_.student.get_weights()))
    distiller_.save(tmp_path / "distiller.keras")
    distiller_.student.save(tmp_path / "student.keras")
    loaded = keras.saving.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(loaded.predict(W.x, verbose=0), distiller_.student.predict(W.x, verbose=0), atol=1e-6)
    reloaded = keras.saving.load_model(tmp_path / "distiller.keras")
    np.testing.assert_allclose(reloaded.predict(W.x, verbose=0), distiller_.predict(W.x, verbose=0), atol=1e-6)


def test_a_refused_first_batch_writes_nothing(tmp_path):
    callbacks = [
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "checkpoint.keras")),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
    ]
    with pytest.raises(ValueError, match="Label 9"):
        five_class_distiller().fit(ArrayBatches(W.x, labels_with(9, row=0)), callbacks=callbacks, verbose=0)
    assert list(tmp_path.iterdir()) == []


def test_the_checked_generator_loses_no_batch():
    yielded = []

    def counted():
        for batch in batches(W.x, W.y):
            yielded.append(batch)
            yield batch

    distiller_ = five_class_distiller()
    distiller_.fit(counted(), steps_per_epoch=4, verbose=0)
    assert len(yielded) == 4
    assert int(distiller_.optimizer.iterations.numpy()) == 4


def test_a_schedule_of_an_unknown_length_fit_stops_before_its_bad_step():
    # A generator's length is unknown, so the schedule is checked step by
    # step: the steps before the bad one run, that one does not.
    distiller_ = five_class_distiller(temperature=polynomial(3.0, 3, -3.0))
    with pytest.raises(ValueError, match="at training step 2"):
        distiller_.fit(batches(W.x, W.y), verbose=0)
    assert int(distiller_.optimizer.iterations.numpy()) == 2


def test_a_schedule_past_the_fit_is_not_refused():
    # The schedule leaves its range at step 4; this fit runs steps 0 to 3.
    distiller_ = five_class_distiller(temperature=polynomial(4.0, 4, 0.0))
    history = distiller_.fit(W.x, W.y, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    with pytest.raises(ValueError, match="at training step 4"):
        distiller_.fit(W.x, W.y, batch_size=8, verbose=0)
