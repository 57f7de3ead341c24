"""Hinton et al. (2015), section 4: an ensemble of nets distilled into one net of the same architecture.

The paper ("Distilling the Knowledge in a Neural Network", section 4,
table 1) distils a 10-model ensemble of speech acoustic models (61.1 % test
frame accuracy; one model alone 58.9 %) into one model of the same size:
60.8 %, more than 80 % of the ensemble's gain over a single model.

Here, on data that ships with the package: MNIST-5k (4,000 training and 1,000
test images) and scikit-learn's digits (1,437 and 360, 8x8), with an MLP
(`keras_kd.models.mlp_student`, `--hidden-units`, default 2x256). For each
dataset and each seed of `--seeds` (the whole experiment repeats per seed):

1. `--validation-fraction` of the training images (default 20 %, a random
   draw per seed) is held out as a validation split; every model below
   trains on the rest.
2. `--members` (default 5) members, each from its own seed (initial weights
   and batch order), trained on the labels alone; the ensemble predicts the
   mean of their softmax outputs.
3. One more model of the same architecture, the single model, trained on the
   labels alone.
4. The same architecture, from the single model's initial weights, distilled
   from the ensemble (`keras_kd.Distiller(members, student, ...)`, whose
   target is the mean of the members' softened distributions), once per
   temperature of `--temperatures` and alpha of `--alphas`, from one
   `keras_kd.TeacherCache` of the members' outputs. The distilled model
   reported is the one with the best validation accuracy (ties: the lower
   validation cross-entropy); the test split is used for nothing but the
   report.
5. Test accuracy of every model; the share of the ensemble's gain kept,
   `(distilled - single) / (ensemble - single)`; and the cost: wall time of
   `predict_on_batch` for the ensemble and for the distilled model
   (`keras_kd.report.predict_seconds`), on the whole test split in one batch
   and on one image, median of the timed calls.

Every model trains for `--epochs` epochs (Adam, `--learning-rate`, batch
`--batch-size`).

Usage:
    ./run python recipes/ensemble_into_one.py --backend jax
    ./run python recipes/ensemble_into_one.py --smoke
Writes saved_models/ensemble_into_one/: results.json, report.md, history.json,
and the first seed's models per dataset (`<dataset>_member_<i>.keras`,
`<dataset>_single.keras`, `<dataset>_distilled.keras`).
"""

import itertools
import time

import numpy as np
import support  # recipes/support.py, beside this script

from keras_kd import launch

RECIPE = "ensemble_into_one"
CLAIM = (
    "Hinton, Vinyals & Dean (2015), section 4, table 1 (speech): a 10-model ensemble 61.1 % test frame accuracy, "
    "one model 58.9 %, one model distilled from the ensemble 60.8 %: 'more than 80 % of the improvement' kept."
)
# Written before the first full run, and never changed after it.
EXPECTED = (
    "On both datasets the ensemble of 5 MLPs beats one MLP by about 1 point (on digits less surely: one of its "
    "360 test images is 0.28 points). The distilled MLP keeps a part of that gain, about half, less than the "
    "paper's 80 %: it learns from the same few thousand images the members fitted almost perfectly, so their soft "
    "targets carry less than on the paper's speech data. The ensemble's inference costs about 5 times the "
    "distilled model's on the whole test split, less on one image, where per-call overhead dominates."
)
DATASETS = ("mnist_5k", "digits")
# Pure functions of the accuracies, so that the tables and results.json agree.
PAPER = {"single": 58.9, "ensemble": 61.1, "distilled": 60.8}
SMOKE_SETTINGS = {"members": 2, "hidden_units": [16], "temperatures": [1.0, 4.0], "alphas": [0.9], "batch_size": 8}


def add_arguments(parser):
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one whole experiment per seed")
    parser.add_argument(
        "--members", type=launch.positive_int, default=5, help="models in the ensemble (default 5; the paper: 10)"
    )
    parser.add_argument(
        "--hidden-units",
        type=launch.positive_int,
        nargs="+",
        default=[256, 256],
        help="the MLP's hidden layers, for every model (default 256 256)",
    )
    parser.add_argument(
        "--temperatures",
        type=launch.temperature,
        nargs="+",
        default=[1.0, 2.0, 4.0, 8.0],
        help="temperatures tried, chosen on validation (default 1 2 4 8)",
    )
    parser.add_argument(
        "--alphas",
        type=launch.alpha,
        nargs="+",
        default=[0.5, 0.9],
        help="weights of the soft term tried, chosen on validation (default 0.5 0.9)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of the training images held out to choose T and alpha (default 0.2)",
    )
    parser.add_argument("--batch-size", type=launch.positive_int, default=64, help="default 64")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's (default 1e-3)")


def main(argv=None):
    args = support.parse_args(
        RECIPE,
        __doc__.splitlines()[0],
        argv,
        epochs=15,
        datasets=("both", *DATASETS),
        add_arguments=add_arguments,
    )
    if not 0.0 < args.validation_fraction < 1.0:
        raise SystemExit(f"error: --validation-fraction must be in (0, 1); got {args.validation_fraction}")
    if args.smoke:
        args.seeds = args.seeds[:1]
        for key, value in SMOKE_SETTINGS.items():
            setattr(args, key, value)
    support.select_backend(args.backend)

    datasets = DATASETS if args.dataset == "both" else (args.dataset,)
    loaded = {name: support.load_data(name, smoke=args.smoke, seed=args.seed) for name in datasets}
    output = support.RecipeOutput(args, Described(loaded), CLAIM)
    results, sections = {}, []
    for name, data in loaded.items():
        runs = [run_seed(args, name, data, seed, output) for seed in args.seeds]
        results[name] = {"data": data.description, "runs": runs, "summary": summarize(runs)}
        sections.append(dataset_report(args, name, data, runs, results[name]["summary"]))
    report = "\n\n".join([f"Expected beforehand: {EXPECTED}", settings_line(args), *sections])
    return output.finish(report, {"expected_beforehand": EXPECTED, "paper": PAPER, "datasets": results})


class Described(support.Data):
    """The `Data` `RecipeOutput` prints: the datasets' descriptions joined (the recipe runs on several)."""

    def __init__(self, loaded):
        first = next(iter(loaded.values()))
        super().__init__(
            first.x_train,
            first.y_train,
            first.x_test,
            first.y_test,
            "; ".join(data.description for data in loaded.values()),
            is_stand_in=any(data.is_stand_in for data in loaded.values()),
        )


def validation_split(data, fraction, seed):
    """`(x_fit, y_fit), (x_validation, y_validation)`: a random `fraction` of the training images held out."""
    order = np.random.default_rng(seed).permutation(len(data.x_train))
    held_out, kept = order[: max(1, round(fraction * len(order)))], order[max(1, round(fraction * len(order))) :]
    return (data.x_train[kept], data.y_train[kept]), (data.x_train[held_out], data.y_train[held_out])


def run_seed(args, name, data, seed, output):
    """One whole experiment: members, ensemble, single model, distilled models; returns its measurements."""
    import keras

    import keras_kd
    from keras_kd import models

    started = time.perf_counter()
    (x_fit, y_fit), (x_val, y_val) = validation_split(data, args.validation_fraction, seed)
    hidden_units = tuple(args.hidden_units)

    def labels_only(model_seed, model_name):
        keras.utils.set_random_seed(model_seed)
        model = models.mlp_student(data.input_shape, data.num_classes, hidden_units, name=model_name)
        initial = support.same_initial_weights(model)
        output.add_history(f"{name} seed {seed} {model_name}", train(args, model, x_fit, y_fit))
        return model, initial

    # Seeds apart from each other's and from the other experiments' (seed * 1000 + index).
    members = [labels_only(1000 * seed + index, f"member_{index}")[0] for index in range(args.members)]
    single, initial = labels_only(1000 * seed + args.members, "single")
    ensemble = ensemble_model(members, data.input_shape)

    # One cache of the members' outputs feeds every (T, alpha): the members run once, not in every step.
    cache = keras_kd.TeacherCache.for_distiller(
        keras_kd.Distiller(members, support.same_initial_weights(initial)), x_fit
    )
    grid = []
    for temperature, alpha in itertools.product(args.temperatures, args.alphas):
        student = support.same_initial_weights(initial)
        distiller = keras_kd.Distiller(members, student, temperature=temperature, alpha=alpha)
        distiller.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
        # The same batches, in the same order, for every (T, alpha).
        batches = cache.dataset(x_fit, y_fit, batch_size=args.batch_size, seed=seed)
        history = distiller.fit(batches, epochs=args.epochs, verbose=0)
        output.add_history(
            f"{name} seed {seed} distilled T={temperature:g} alpha={alpha:g}",
            {key: [float(value) for value in values] for key, values in history.history.items()},
        )
        logits = student.predict(x_val, batch_size=256, verbose=0)
        grid.append(
            {
                "temperature": temperature,
                "alpha": alpha,
                "validation_accuracy": float(np.mean(logits.argmax(-1) == y_val)),
                "validation_cross_entropy": cross_entropy(logits, y_val),
                "student": student,
            }
        )
    chosen = max(grid, key=lambda run: (run["validation_accuracy"], -run["validation_cross_entropy"]))
    distilled = chosen["student"]

    accuracy = {
        "members": [support.accuracy(member, data.x_test, data.y_test) for member in members],
        "ensemble": support.accuracy(ensemble, data.x_test, data.y_test),
        "single": support.accuracy(single, data.x_test, data.y_test),
        "distilled": support.accuracy(distilled, data.x_test, data.y_test),
    }
    # On the split T and alpha were chosen on: is the distilled model's place there the same as on the test split?
    validation = {
        "members": [support.accuracy(member, x_val, y_val) for member in members],
        "ensemble": support.accuracy(ensemble, x_val, y_val),
        "single": support.accuracy(single, x_val, y_val),
        "distilled": chosen["validation_accuracy"],
    }
    run = {
        "seed": seed,
        "fit_images": len(x_fit),
        "validation_images": len(x_val),
        "test_accuracy": accuracy,
        "validation_accuracy": validation,
        "share_kept": share_kept(accuracy["single"], accuracy["ensemble"], accuracy["distilled"]),
        "chosen": {"temperature": chosen["temperature"], "alpha": chosen["alpha"]},
        "grid": [{key: value for key, value in point.items() if key != "student"} for point in grid],
        "parameters": {"ensemble": support.parameter_count(ensemble), "distilled": support.parameter_count(distilled)},
        "predict_ms": inference_ms(args, {"ensemble": ensemble, "distilled": distilled}, data.x_test),
    }
    if seed == args.seeds[0]:
        saved = {f"{name}_member_{index}": member for index, member in enumerate(members)}
        output.save_models({**saved, f"{name}_single": single, f"{name}_distilled": distilled})
    run["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"{name} seed {seed}: members {percent_list(accuracy['members'])}, ensemble {100 * accuracy['ensemble']:.2f}, "
        f"single {100 * accuracy['single']:.2f}, distilled {100 * accuracy['distilled']:.2f} "
        f"(T={chosen['temperature']:g}, alpha={chosen['alpha']:g}); {run['seconds']:.0f} s",
        flush=True,
    )
    return run


def train(args, model, x, y):
    import keras

    return support.train(
        model,
        x,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=keras.optimizers.Adam(args.learning_rate),
        verbose=0,
    )


def ensemble_model(members, input_shape):
    """One Keras model predicting the mean of the members' softmax outputs (what the ensemble serves)."""
    import keras

    inputs = keras.Input(input_shape)
    probabilities = [keras.layers.Softmax()(member(inputs)) for member in members]
    return keras.Model(inputs, keras.layers.Average()(probabilities), name="ensemble")


def cross_entropy(logits, labels):
    """Mean cross-entropy of integer `labels` under `logits`, in nats (NumPy)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_probabilities[np.arange(len(labels)), labels]))


def share_kept(single, ensemble, distilled):
    """`(distilled - single) / (ensemble - single)`; None where the ensemble does not differ from the single model."""
    if ensemble == single:
        return None
    return (distilled - single) / (ensemble - single)


def inference_ms(args, models_by_name, x_test):
    """Median ms of `predict_on_batch` per model, on the whole test split and on one image."""
    from keras_kd import report

    timed = 2 if args.smoke else 20
    batches = {"test split": x_test, "one image": x_test[:1]}
    return {
        name: {
            label: 1e3 * float(np.median(report.predict_seconds(model, batch, warmup_batches=2, timed_batches=timed)))
            for label, batch in batches.items()
        }
        for name, model in models_by_name.items()
    }


def summarize(runs):
    """Means and standard deviations over the seeds (members: over every member of every seed), and the share kept."""
    accuracy = {key: [run["test_accuracy"][key] for run in runs] for key in ("ensemble", "single", "distilled")}
    accuracy["members"] = [value for run in runs for value in run["test_accuracy"]["members"]]
    means = {key: float(np.mean(values)) for key, values in accuracy.items()}
    return {
        "mean": means,
        "std": {key: standard_deviation(values) for key, values in accuracy.items()},
        "share_kept_of_means": share_kept(means["single"], means["ensemble"], means["distilled"]),
        "share_kept_of_means_against_members": share_kept(means["members"], means["ensemble"], means["distilled"]),
    }


def standard_deviation(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def percent_list(values):
    return ", ".join(f"{100 * value:.1f}" for value in values)


def validation_line(runs):
    """The validation accuracies of members, ensemble, single and distilled models, averaged over the seeds."""
    means = {
        "members": np.mean([value for run in runs for value in run["validation_accuracy"]["members"]]),
        **{
            key: np.mean([run["validation_accuracy"][key] for run in runs])
            for key in ("ensemble", "single", "distilled")
        },
    }
    return ", ".join(f"{key} {100 * value:.2f}" for key, value in means.items())


def settings_line(args):
    return (
        f"Every model: MLP {'-'.join(map(str, args.hidden_units))} (`keras_kd.models.mlp_student`), {args.epochs} "
        f"epochs, Adam {args.learning_rate:g}, batch {args.batch_size}; {args.members} members; "
        f"T in {args.temperatures} and alpha in {args.alphas}, chosen per seed on a {args.validation_fraction:.0%} "
        f"validation split of the training images; seeds {args.seeds}."
    )


def dataset_report(args, name, data, runs, summary):
    rows = []
    for run in runs:
        accuracy = run["test_accuracy"]
        share = run["share_kept"]
        rows.append(
            [
                run["seed"],
                f"{100 * np.mean(accuracy['members']):.2f} ± {100 * standard_deviation(accuracy['members']):.2f} "
                f"({percent_list(accuracy['members'])})",
                f"{100 * accuracy['ensemble']:.2f}",
                f"{100 * accuracy['single']:.2f}",
                f"{100 * accuracy['distilled']:.2f} (T={run['chosen']['temperature']:g}, "
                f"alpha={run['chosen']['alpha']:g})",
                "n/a" if share is None else f"{round(100 * share)} %",
            ]
        )
    mean, std = summary["mean"], summary["std"]
    share = summary["share_kept_of_means"]
    rows.append(
        [
            "mean ± std",
            *(
                f"{100 * mean[key]:.2f} ± {100 * std[key]:.2f}"
                for key in ("members", "ensemble", "single", "distilled")
            ),
            "n/a" if share is None else f"{round(100 * share)} % (of the means)",
        ]
    )
    accuracy_table = support.markdown_table(
        [
            "Seed",
            f"{args.members} members: test accuracy (%), mean ± std (each)",
            "Ensemble (mean softmax)",
            "Single model",
            "Distilled from the ensemble (chosen on validation)",
            "Share of the gain kept",
        ],
        rows,
    )
    grid_rows = [
        [
            f"T={point['temperature']:g}, alpha={point['alpha']:g}",
            f"{100 * np.mean([run['grid'][index]['validation_accuracy'] for run in runs]):.2f}",
            percent_list([run["grid"][index]["validation_accuracy"] for run in runs]),
        ]
        for index, point in enumerate(runs[0]["grid"])
    ]
    grid_table = support.markdown_table(
        ["Distilled with", "Validation accuracy (%), mean over seeds", "per seed"], grid_rows
    )
    cost_rows = []
    for label in ("test split", "one image"):
        ensemble_ms = [run["predict_ms"]["ensemble"][label] for run in runs]
        distilled_ms = [run["predict_ms"]["distilled"][label] for run in runs]
        ratios = [e / d for e, d in zip(ensemble_ms, distilled_ms, strict=True)]
        cost_rows.append(
            [
                f"{label} ({len(data.x_test) if label == 'test split' else 1} rows)",
                f"{np.mean(ensemble_ms):.2f}",
                f"{np.mean(distilled_ms):.2f}",
                f"{np.mean(ratios):.1f}x ({', '.join(f'{ratio:.1f}' for ratio in ratios)})",
            ]
        )
    parameters = runs[0]["parameters"]
    cost_table = support.markdown_table(
        ["predict_on_batch, median ms", "Ensemble", "Distilled", "Ensemble / distilled (per seed)"], cost_rows
    )
    against_members = summary["share_kept_of_means_against_members"]
    against_members = "n/a" if against_members is None else f"{round(100 * against_members)} %"
    return "\n\n".join(
        [
            f"## {name}\n\n{data.description}; {runs[0]['fit_images']:,} images to train on, "
            f"{runs[0]['validation_images']:,} for validation. Parameters: ensemble {parameters['ensemble']:,}, "
            f"distilled {parameters['distilled']:,}. Seconds per seed: {', '.join(str(run['seconds']) for run in runs)}.",
            accuracy_table,
            f"Share of the gain kept, of the means, against the members' mean accuracy instead of the single "
            f"model's: {against_members}. Validation accuracy (%), mean over seeds: {validation_line(runs)}.",
            grid_table,
            cost_table,
        ]
    )


if __name__ == "__main__":
    support.run(main)
