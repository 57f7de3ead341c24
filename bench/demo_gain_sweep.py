"""Paired sweeps of the demo's distillation gain over settings and seeds.

The evidence behind the README's statement on the demo's gain: for each
setting (a JSON object), and each seed, one 2x64 MLP student is built and
copied, one copy is trained on the labels alone and one distilled from the
teacher, on the same images in the same order (the demo's own batches and
loss), and the gain is distilled minus labels-only test accuracy. One teacher
is trained per run, as the demo trains it (optionally on shifted copies).

Usage:
    ./run python -m bench.demo_gain_sweep '{}' '{"temperature": 2, "alpha": 0.9}' \\
        '{"alpha": [0.9, 0.1]}' --backend jax --seeds 0 1 2 10 11 12 13

(the settings first: `--seeds` takes every number after it; `'{}'` is the
demo's own setting).

Keys of a setting (the demo's defaults where missing): `temperature` and
`alpha` (a number, or `[start, end]` for a linear schedule over training),
`epochs`, `learning_rate`, `cosine_decay` (true: decay the learning rate to 0),
`batch_size`, `hidden_units`, `shifted_copies`, `max_shift`. Prints one line
per setting: mean labels-only accuracy, mean gain, its standard deviation and
the per-seed gains.
"""

import argparse
import json
import math
import statistics
import time

from keras_kd import launch

SETTING_KEYS = {
    "temperature",
    "alpha",
    "epochs",
    "learning_rate",
    "cosine_decay",
    "batch_size",
    "hidden_units",
    "shifted_copies",
    "max_shift",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.demo_gain_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=launch.BACKENDS, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 10, 11, 12, 13])
    parser.add_argument("--teacher-epochs", type=launch.positive_int, default=None, help="default: the demo's")
    parser.add_argument("--teacher-shifted-copies", type=int, default=0, help="default 0, as in the demo")
    parser.add_argument("settings", nargs="+", type=_setting, help="JSON objects (see above)")
    return parser.parse_args(argv)


def _setting(text):
    try:
        setting = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}); got {text!r}") from None
    if not isinstance(setting, dict) or not set(setting) <= SETTING_KEYS:
        raise argparse.ArgumentTypeError(f"must be a JSON object with keys among {sorted(SETTING_KEYS)}; got {text!r}")
    return setting


def main(argv=None, print_fn=print):
    args = parse_args(argv)
    launch.select_backend(args.backend)
    import keras

    from keras_kd import datasets, demo, models
    from keras_kd.distiller import Distiller

    (x_train, y_train), (x_test, y_test) = datasets.load_mnist_5k(test_fraction=demo.TEST_FRACTION)
    num_classes = int(y_train.max()) + 1

    def fit(model, loss, x, y, epochs, seed, batch_size, learning_rate, cosine_decay=False):
        if cosine_decay:
            learning_rate = keras.optimizers.schedules.CosineDecay(
                learning_rate, epochs * math.ceil(len(x) / batch_size)
            )
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
        model.fit(demo.ShuffledBatches(x, y, batch_size, seed), epochs=epochs, shuffle=False, verbose=0)

    def accuracy(model):
        logits = model.predict(x_test, batch_size=500, verbose=0)
        return 100.0 * float((logits.argmax(axis=-1) == y_test).mean())

    keras.utils.set_random_seed(0)
    teacher = models.mnist_cnn_teacher(x_train.shape[1:], num_classes)
    x_teacher, y_teacher = datasets.add_shifted_copies(x_train, y_train, args.teacher_shifted_copies, demo.MAX_SHIFT)
    fit(
        teacher,
        demo.label_loss(),
        x_teacher,
        y_teacher,
        args.teacher_epochs or demo.TEACHER_EPOCHS,
        0,
        demo.TEACHER_BATCH_SIZE,
        demo.TEACHER_LEARNING_RATE,
    )
    print_fn(f"{keras.config.backend()}: teacher {accuracy(teacher):.2f}% test accuracy")

    for setting in args.settings:
        started = time.perf_counter()
        options = {
            "epochs": setting.get("epochs", demo.STUDENT_EPOCHS),
            "batch_size": setting.get("batch_size", demo.BATCH_SIZE),
            "learning_rate": setting.get("learning_rate", demo.LEARNING_RATE),
            "cosine_decay": setting.get("cosine_decay", False),
        }
        x_student, y_student = datasets.add_shifted_copies(
            x_train,
            y_train,
            setting.get("shifted_copies", demo.SHIFTED_COPIES),
            setting.get("max_shift", demo.MAX_SHIFT),
        )
        steps = options["epochs"] * math.ceil(len(x_student) / options["batch_size"])
        baselines, gains = [], []
        for seed in args.seeds:
            keras.utils.set_random_seed(seed)
            hidden_units = tuple(setting.get("hidden_units", demo.HIDDEN_UNITS))
            labels_only = models.mlp_student(x_train.shape[1:], num_classes, hidden_units)
            distilled = keras.models.clone_model(labels_only)
            distilled.set_weights(labels_only.get_weights())
            fit(labels_only, demo.label_loss(), x_student, y_student, seed=seed, **options)
            distiller = Distiller(
                teacher,
                distilled,
                temperature=_value_or_schedule(setting.get("temperature", demo.TEMPERATURE), steps),
                alpha=_value_or_schedule(setting.get("alpha", demo.ALPHA), steps),
            )
            fit(distiller, None, x_student, y_student, seed=seed, **options)
            baselines.append(accuracy(labels_only))
            gains.append(accuracy(distilled) - baselines[-1])
        print_fn(
            f"{json.dumps(setting)}: labels only {statistics.mean(baselines):.2f}, "
            f"gain {statistics.mean(gains):+.2f} (sd {statistics.stdev(gains) if len(gains) > 1 else 0.0:.2f}; "
            f"per seed {', '.join(f'{gain:+.1f}' for gain in gains)}) "
            f"[{time.perf_counter() - started:.0f} s]"
        )


def _value_or_schedule(value, steps):
    """A number as is; `[start, end]` as a linear decay over `steps` steps."""
    if isinstance(value, list):
        import keras

        start, end = value
        return keras.optimizers.schedules.PolynomialDecay(start, steps, end_learning_rate=end)
    return value


if __name__ == "__main__":
    main()
