"""What the scripts in `recipes/` share: arguments, backend, data, training, outputs.

A recipe imports it as `import support`: Python puts the folder of the
script it runs on `sys.path`. It uses only public names of keras_kd, and
starts as the command line does, through `keras_kd.launch` (the backend,
the argparse types), without the command line itself.

Each recipe reproduces one known result. It parses its arguments with
`parse_args`, picks the Keras backend with `select_backend` (before anything
imports Keras, which is why this module imports Keras only inside its
functions), loads data with `load_data`, trains with `train`, and writes
everything with `RecipeOutput` into `saved_models/<recipe>/`
(`saved_models/smoke/<recipe>/` with `--smoke`):

- `<model>.keras` for every model (the students alone, no teacher inside);
- `history.json`: the per-epoch Keras logs of every training run;
- `results.json` and `report.md`: settings, data, and the recipe's tables;
- `comparison.json`: `keras_kd.report.compare` of the trained models;
- `history_<model>.png` and `comparison.png` (`keras_kd.plots`; not in smoke runs).

`--smoke` makes a recipe tiny and fast (a few rows, one epoch, tiny models
where the recipe lets you choose them: `SMOKE_OVERRIDES`) so that a test can
check it runs end to end. Datasets that are not embedded in the package
(CIFAR-10) are then replaced by random images of the same shape, and every
output says so: a smoke run is never a result.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import re
import time

from keras_kd import launch

BACKENDS = launch.BACKENDS
# Datasets that ship with the package (no download), so smoke runs use them.
EMBEDDED_DATASETS = ("mnist_5k", "digits")
SMOKE_TRAIN_ROWS = 32
SMOKE_TEST_ROWS = 16
# What --smoke sets, where a recipe has the option: one epoch, and tiny models
# (the full-size builders are tested on their own in tests/test_models.py).
SMOKE_OVERRIDES = {
    "epochs": 1,
    "teacher_epochs": 1,
    "teacher": "small_cnn_student",
    "student": "small_cnn_student",
    "teacher_feature_layer": "block4_relu1",
    "student_feature_layer": "block4_relu1",
}


def parse_args(recipe, description, argv=None, *, epochs, datasets, add_arguments=None):
    """Parses the options every recipe has, plus the recipe's own.

    Args:
        recipe: The recipe's name; outputs go to `saved_models/<recipe>/`
            (`saved_models/smoke/<recipe>/` with `--smoke`, so that a smoke
            run never overwrites the result files that ship).
        description: One line for `--help`.
        argv: The arguments (default: `sys.argv[1:]`).
        epochs: Default of `--epochs`.
        datasets: The datasets the recipe accepts; the first is the default.
        add_arguments: Optional function receiving the parser, to add the
            recipe's own options.

    Returns:
        An `argparse.Namespace` with `backend`, `epochs`, `dataset`, `smoke`,
        `seed`, `output_dir` and the recipe's own options.
    """
    parser = argparse.ArgumentParser(prog=f"recipes/{recipe}.py", description=description)
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="Keras backend (default: KERAS_BACKEND)")
    parser.add_argument(
        "--epochs", type=launch.positive_int, default=epochs, help=f"training epochs (default {epochs})"
    )
    parser.add_argument("--dataset", choices=datasets, default=datasets[0], help=f"default {datasets[0]}")
    parser.add_argument("--smoke", action="store_true", help="tiny and fast, to check the recipe runs (not a result)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--output-dir",
        default=None,
        help=f"default {launch.default_output_dir(recipe)}/, or {launch.default_output_dir(recipe, smoke=True)}/ "
        "with --smoke",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.recipe = recipe
    if args.output_dir is None:
        args.output_dir = launch.default_output_dir(recipe, smoke=args.smoke)
    if args.smoke:
        for key, value in SMOKE_OVERRIDES.items():
            if hasattr(args, key):
                setattr(args, key, value)
    return args


def add_architecture_arguments(parser, *, teacher, student):
    """Adds `--teacher ARCH` and `--student ARCH` (names for `keras_kd.models.get`).

    The names are checked by `keras_kd.models.get` once the backend is
    chosen: listing them here would import Keras before `--backend` applies.
    """
    parser.add_argument("--teacher", default=teacher, help=f"a keras_kd.models name (default {teacher})")
    parser.add_argument("--student", default=student, help=f"a keras_kd.models name (default {student})")


def run(main):
    """Runs a recipe's `main()`; a missing dataset or file ends it with its message, not a traceback."""
    import sys

    try:
        main()
    except (FileNotFoundError, ConnectionError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def add_training_arguments(parser, *, batch_size, learning_rate, temperature, alpha, augment=None):
    """Adds `--batch-size`, `--learning-rate`, `--temperature`, `--alpha` (and `--no-augment`).

    Args:
        parser: An `argparse.ArgumentParser`.
        batch_size: Default batch size.
        learning_rate: Default (initial) learning rate.
        temperature: Default distillation temperature.
        alpha: Default weight of the soft term (`1 - alpha` weighs the labels).
        augment: If not `None`, adds `--no-augment` to turn off the dataset's
            augmentation (`keras_kd.datasets.augmentation`); `args.augment` is
            then True unless given.
    """
    parser.add_argument("--batch-size", type=launch.positive_int, default=batch_size, help=f"default {batch_size}")
    parser.add_argument("--learning-rate", type=float, default=learning_rate, help=f"default {learning_rate}")
    parser.add_argument(
        "--temperature", type=float, default=temperature, help=f"distillation T (default {temperature})"
    )
    parser.add_argument("--alpha", type=float, default=alpha, help=f"weight of the soft term (default {alpha})")
    if augment is not None:
        parser.add_argument("--no-augment", dest="augment", action="store_false", help="train without flips and shifts")


def select_backend(backend):
    """Sets the Keras backend (before Keras is imported) and returns `keras`.

    Args:
        backend: `"torch"`, `"tensorflow"`, `"jax"`, or `None` to keep
            `KERAS_BACKEND` (Keras's own default when unset).

    Returns:
        The `keras` module, running on that backend.

    Raises:
        RuntimeError: if Keras was already imported with another backend
            (`keras_kd.launch.BackendMismatchError`).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    launch.select_backend(backend)  # Also imports torch before TensorFlow.
    import keras

    return keras


@dataclasses.dataclass
class Data:
    """Train and test arrays, and what they are (printed in every output)."""

    x_train: object
    y_train: object
    x_test: object
    y_test: object
    description: str
    is_stand_in: bool = False

    @property
    def num_classes(self):
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


def load_data(dataset, smoke=False, seed=0):
    """Loads `dataset` through `keras_kd.datasets.load`, or a smoke stand-in.

    Args:
        dataset: A name `keras_kd.datasets.load` accepts, e.g. `"mnist_5k"`
            or `"cifar10"`.
        smoke: Keep `SMOKE_TRAIN_ROWS` / `SMOKE_TEST_ROWS` rows. A dataset
            that is not embedded (`EMBEDDED_DATASETS`) is then replaced by
            random images of its shape, labelled as such, so that a smoke run
            needs no download.
        seed: Seed of the random stand-in.

    Returns:
        A `Data`.

    Raises:
        Whatever `keras_kd.datasets.load` raises for a dataset that is not
        available (outside smoke mode): its message says how to get it.
    """
    import numpy as np

    from keras_kd import datasets

    if smoke and dataset not in EMBEDDED_DATASETS:
        shape, num_classes = datasets.image_shape(dataset), datasets.num_classes(dataset)
        rng = np.random.default_rng(seed)
        rows = SMOKE_TRAIN_ROWS + SMOKE_TEST_ROWS
        x = rng.uniform(size=(rows, *shape)).astype("float32")
        y = (np.arange(rows) % num_classes).astype("int32")
        return Data(
            x[:SMOKE_TRAIN_ROWS],
            y[:SMOKE_TRAIN_ROWS],
            x[SMOKE_TRAIN_ROWS:],
            y[SMOKE_TRAIN_ROWS:],
            f"RANDOM STAND-IN for {dataset} (smoke test: random images, NOT {dataset} results)",
            is_stand_in=True,
        )
    x_train, y_train = datasets.load(dataset, "train")
    x_test, y_test = datasets.load(dataset, "test")
    description = f"{dataset}: {len(x_train):,} training and {len(x_test):,} test images"
    if smoke:
        x_train, y_train = x_train[:SMOKE_TRAIN_ROWS], y_train[:SMOKE_TRAIN_ROWS]
        x_test, y_test = x_test[:SMOKE_TEST_ROWS], y_test[:SMOKE_TEST_ROWS]
        description = f"{dataset}, first {SMOKE_TRAIN_ROWS} / {SMOKE_TEST_ROWS} rows (smoke test, not a result)"
    return Data(x_train, y_train, x_test, y_test, description)


def train(
    model,
    x,
    y=None,
    *,
    epochs,
    batch_size,
    optimizer,
    validation_data=None,
    augmentation=None,
    callbacks=(),
    verbose=2,
):
    """Compiles and fits a classifier or a `keras_kd.Distiller`; returns its logs.

    A plain model is trained with sparse cross-entropy on its logits; a
    Distiller with its own loss. Both report accuracy, except a label-free
    Distiller (`y=None`).

    Args:
        model: A `keras.Model` that outputs logits, or a `keras_kd.Distiller`.
        x: Training inputs.
        y: Integer labels (`None` for label-free distillation).
        epochs: Number of epochs.
        batch_size: Batch size.
        optimizer: A `keras.optimizers.Optimizer` (a fresh one per call).
        validation_data: `(x, y)` evaluated after every epoch, or `None`.
        augmentation: For a plain model, Keras preprocessing layers applied
            to the training batches (e.g. `keras_kd.datasets.augmentation`);
            give a Distiller its augmentation when building it instead (the
            teacher must see the same images).
        callbacks: Keras callbacks.
        verbose: As for `keras.Model.fit`.

    Returns:
        The per-epoch logs, `{name: [float, ...]}` (JSON-ready).

    Raises:
        ValueError: for `augmentation` given with a Distiller.
    """
    import keras

    from keras_kd.distiller import Distiller

    if isinstance(model, Distiller):
        if augmentation is not None:
            raise ValueError(
                "Pass the augmentation to the Distiller (Distiller(..., augmentation=...)), "
                "so that the teacher and the student see the same augmented images."
            )
        # Label-free fit (y=None) with a compiled metric fails on jax and
        # torch (Keras builds the metric from the missing labels), so the
        # accuracy of a label-free student is measured after training.
        model.compile(optimizer=optimizer, metrics=None if y is None else ["accuracy"])
    else:
        if augmentation is not None:
            # Shares the model's layers, so training the wrapper trains the model.
            inputs = keras.Input(model.input_shape[1:])
            model = keras.Model(inputs, model(augmentation(inputs)), name=f"augmented_{model.name}")
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    history = model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=validation_data,
        callbacks=list(callbacks),
        verbose=verbose,
    )
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def trainer(args, data, make_optimizer):
    """A `fit` function bound to a recipe's data and options.

    Args:
        args: Parsed arguments with `epochs` and `batch_size`.
        data: The `Data`; its test split is evaluated after every epoch.
        make_optimizer: Function of the number of epochs returning a fresh
            optimizer (schedules may depend on the epochs).

    Returns:
        `fit(model, x=None, y=None, *, epochs=None, label_free=False, **options)`,
        which calls `train` on `x`/`y` (default: the training split),
        `epochs` (default `args.epochs`), with no labels if `label_free`, and
        returns the logs; `options` go to `train` (e.g. `augmentation`).
    """

    def fit(model, x=None, y=None, *, epochs=None, label_free=False, **options):
        epochs = epochs or args.epochs
        return train(
            model,
            data.x_train if x is None else x,
            None if label_free else (data.y_train if y is None else y),
            epochs=epochs,
            batch_size=args.batch_size,
            optimizer=make_optimizer(epochs),
            validation_data=(data.x_test, data.y_test),
            **options,
        )

    return fit


def augmentation(args):
    """The dataset's augmentation layers (`keras_kd.datasets.augmentation`), or None with `--no-augment`."""
    from keras_kd import datasets

    return datasets.augmentation(args.dataset, seed=args.seed) if args.augment else None


def steps_per_epoch(rows, batch_size):
    """Optimizer steps in one epoch of `rows` examples (for schedules)."""
    return -(-rows // batch_size)


def sgd_cosine(args, rows, epochs):
    """SGD with Nesterov momentum 0.9, cosine-decayed from `args.learning_rate` to 0.

    Args:
        args: Parsed arguments with `learning_rate`, `batch_size` and
            `weight_decay`.
        rows: Training examples per epoch.
        epochs: Epochs over which the rate decays.
    """
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, decay_steps=steps_per_epoch(rows, args.batch_size) * epochs
    )
    return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)


def same_initial_weights(model):
    """A copy of `model` with the same weights (for a fair baseline/distilled pair)."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def parameter_count(model):
    """Parameters as PyTorch counts them: BatchNorm moving statistics left out.

    PyTorch keeps those statistics as buffers, not parameters, so this is the
    count the seeds report; unlike `len(model.trainable_weights)` it does not
    drop to 0 when the model is frozen (as a Distiller's teacher is).
    """
    import numpy as np

    return int(
        sum(np.prod(weight.shape) for weight in model.weights if weight.name not in ("moving_mean", "moving_variance"))
    )


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of a logits model on `(x, y)`, in [0, 1]."""
    import numpy as np

    predictions = model.predict(x, batch_size=batch_size, verbose=0).argmax(axis=-1)
    return float(np.mean(predictions == np.asarray(y)))


def compare_models(models, data, *, smoke=False, batch_sizes=(1, 256)):
    """Measures the models with `keras_kd.report.compare` on the test split.

    Args:
        models: `{name: keras.Model}` outputting logits, in table order; a
            model named `"teacher"` is the reference for fidelity.
        data: The `Data` whose test split is measured.
        smoke: Time 1 batch of `SMOKE_TEST_ROWS` examples after 1 of
            warm-up, instead of 30 after 5 at each of `batch_sizes`.
        batch_sizes: Batch sizes of the latency measurement.

    Returns:
        A `keras_kd.report.Report`.
    """
    from keras_kd import report

    timing = {}
    if smoke:
        timing = {"warmup_batches": 1, "timed_batches": 1}
        batch_sizes = (SMOKE_TEST_ROWS,)
    return report.compare(
        models,
        (data.x_test, data.y_test),
        teacher="teacher" if "teacher" in models else None,
        batch_sizes=batch_sizes,
        **timing,
    )


def test_errors(report, name):
    """How many test examples model `name` of `report` gets wrong."""
    examples = report.settings["examples"]
    return int(round((100.0 - report.models[name]["test_accuracy"]) / 100.0 * examples))


def largest_batch_latency(report, name):
    """`(batch size, p50 ms per batch)` of model `name` at its largest timed batch."""
    timing = max(report.models[name]["latency"], key=lambda timing: timing["batch_size"])
    return timing["batch_size"], timing["p50_ms"]


def markdown_table(header, rows):
    """A markdown table from a header and rows of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def epoch_table(history, columns):
    """Per-epoch markdown table of some of the `history` logs.

    Args:
        history: `{name: [value per epoch]}`, as `train` returns.
        columns: `(log name, header, format)` triples; accuracies (names
            ending in "accuracy") are shown in percent.
    """
    epochs = len(next(iter(history.values())))
    rows = []
    for epoch in range(epochs):
        row = [epoch + 1]
        for name, _, fmt in columns:
            value = history[name][epoch]
            row.append(format(value * 100 if name.endswith("accuracy") else value, fmt))
        rows.append(row)
    return markdown_table(["Epoch"] + [header for _, header, _ in columns], rows)


class RecipeOutput:
    """Writes a recipe's models, histories, results and report to one folder.

    Args:
        args: The parsed arguments (saved in `results.json`).
        data: The `Data` the recipe ran on.
        claim: The published result the recipe reproduces, in words.

    Example:

    ```python
    # not run: needs a recipe's parsed arguments, data and trained models
    output = RecipeOutput(args, data, claim="Hinton et al. (2015): 67 / 146 / 74 test errors")
    output.add_history("teacher", train(teacher, data.x_train, data.y_train, ...))
    output.save_models({"teacher": teacher, "student": student})
    output.finish(table_markdown, {"test_errors": errors}, compare_models(models, data))
    ```
    """

    def __init__(self, args, data, claim):
        import keras

        self.directory = pathlib.Path(args.output_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.started = time.perf_counter()
        self.histories = {}
        self.results = {
            "recipe": args.recipe,
            "claim": claim,
            "backend": keras.config.backend(),
            "data": data.description,
            "is_stand_in": data.is_stand_in,
            "smoke": bool(args.smoke),
            "settings": {key: value for key, value in vars(args).items() if key != "output_dir"},
        }
        print(f"Backend {keras.config.backend()}; data: {data.description}", flush=True)

    def add_history(self, name, history):
        """Records the logs of one training run (also written at once)."""
        self.histories[name] = history
        (self.directory / "history.json").write_text(json.dumps(self.histories, indent=2))
        return history

    def save_models(self, models):
        """Saves each `{name: model}` as `<name>.keras` (without optimizer state)."""
        from keras_kd import export

        for name, model in models.items():
            export.save_keras(model, self.directory / f"{name}.keras")

    def finish(self, report_markdown, results, comparison=None):
        """Writes `report.md` and `results.json`, prints the report; returns the results.

        Args:
            report_markdown: The recipe's own tables.
            results: JSON-ready values to add to `results.json`.
            comparison: A `keras_kd.report.Report` to append to the report and
                save as `comparison.json` (and `comparison.png`), or `None`.
        """
        self.results.update(results)
        if comparison is not None:
            self.results["comparison"] = comparison.to_dict()
            comparison.to_json(self.directory / "comparison.json")
            report_markdown = f"{report_markdown}\n\n## Comparison\n\n{comparison.to_markdown()}"
        self.results["seconds"] = round(time.perf_counter() - self.started, 1)
        warning = ""
        if self.data.is_stand_in or self.results["smoke"]:
            settings = self.results["settings"]
            overridden = ", ".join(f"{key}={settings[key]}" for key in SMOKE_OVERRIDES if key in settings)
            warning = f"> SMOKE RUN on {self.data.description}, with {overridden}. These numbers are not results.\n\n"
        report = (
            f"# {self.results['recipe']}\n\n{warning}"
            f"Backend: {self.results['backend']}. Data: {self.data.description}.\n\n"
            f"Claim reproduced: {self.results['claim']}\n\n{report_markdown}\n"
        )
        (self.directory / "report.md").write_text(report)
        (self.directory / "results.json").write_text(json.dumps(self.results, indent=2))
        if not self.results["smoke"]:  # Plots are slow and say nothing about a smoke run.
            self._plot(comparison)
        print(f"\n{report}\nWritten to {self.directory}/ in {self.results['seconds']} s.", flush=True)
        return self.results

    def _plot(self, comparison):
        try:
            from keras_kd import plots
        except ImportError:
            return  # keras_kd.plots (matplotlib) is optional for a recipe.
        for name, history in self.histories.items():
            file_name = re.sub(r"[^A-Za-z0-9]+", "_", name).strip(
                "_"
            )  # "(a) labels only seed 0" -> a_labels_only_seed_0
            plots.plot_history(history, self.directory / f"history_{file_name}.png")
        if comparison is not None:
            plots.plot_comparison(comparison, self.directory / "comparison.png")


def mean_std(values):
    """`(mean, sample standard deviation)` of `values` as floats; the deviation is 0 for a single value."""
    import numpy as np

    values = np.asarray(values, dtype="float64")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
