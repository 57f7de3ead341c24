"""Every recipe in `recipes/` runs end to end in `--smoke` mode, and says what it ran on.

The smoke runs check the recipes' plumbing (arguments, data, training,
outputs), which does not depend on the backend, so they run once, on torch
(the quickest for one-step runs: no tracing or compilation), all in one
subprocess to pay for the imports once. The model builders themselves are
tested on every backend in test_models.py and test_models_resnet.py.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

from conftest import REQUESTED_BACKEND
from recipes import support

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
SMOKE_BACKEND = "torch"
# Recipe -> the models it saves.
RECIPES = {
    "mnist_hinton": ("teacher", "student_alone", "student_distilled"),
    "mnist_mlp": ("teacher", "student_distilled", "student_alone"),
    "mnist_feature_matching": ("teacher",),
    "mnist_transfer_set": ("teacher",),
    "mnist_patient": ("teacher",),
    "cifar10_small_cnn": ("teacher", "student_baseline", "student_distilled"),
    "cifar10_resnet18_labelfree": ("teacher", "student_labelfree"),
    "cifar10_resnet50_to_resnet18": ("teacher", "student_baseline", "student_distilled"),
}
CIFAR_RECIPES = [name for name in RECIPES if name.startswith("cifar10")]
# 32 smoke rows in batches of 8: 4 steps, so the T and alpha schedules move.
EXTRA_SMOKE_ARGUMENTS = {"cifar10_resnet50_to_resnet18": ["--batch-size", "8"]}

DRIVER = """
import contextlib, io, json, runpy, sys, traceback
root, recipes, extra, backend = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
# Where `python recipes/NAME.py` finds the recipes' `import support`.
sys.path.insert(0, "recipes")
import support
status = {}
for name in recipes:
    main = runpy.run_path(f"recipes/{name}.py")["main"]
    try:
        main(["--smoke", "--backend", backend, "--output-dir", f"{root}/{name}", *extra.get(name, [])])
        status[name] = "ok"
    except Exception:
        status[name] = traceback.format_exc()
# Without --smoke, a CIFAR recipe needs CIFAR-10, which the test hides.
main = runpy.run_path("recipes/cifar10_small_cnn.py")["main"]
stderr = io.StringIO()
with contextlib.redirect_stderr(stderr):
    try:
        support.run(lambda: main(["--backend", backend, "--epochs", "1", "--output-dir", f"{root}/missing"]))
        exit_code = 0
    except SystemExit as exit:
        exit_code = exit.code
status["missing_cifar10"] = {"exit_code": exit_code, "stderr": stderr.getvalue()}
with open(f"{root}/status.json", "w") as file:
    json.dump(status, file)
"""

needs_smoke_backend = pytest.mark.skipif(
    REQUESTED_BACKEND != SMOKE_BACKEND,
    reason=f"the recipe smoke runs are backend-independent plumbing and run once, on {SMOKE_BACKEND}",
)


def tracked_results():
    """`{path: SHA-256}` of the result files that ship in saved_models/ (git's list, as they are on disk)."""
    listed = subprocess.run(
        ["git", "ls-files", "saved_models"], cwd=REPOSITORY, capture_output=True, text=True, check=True
    ).stdout.split()
    return {path: hashlib.sha256((REPOSITORY / path).read_bytes()).hexdigest() for path in listed}


def is_git_ignored(path):
    status = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPOSITORY).returncode
    assert status in (0, 1), f"git check-ignore failed on {path}"
    return status == 0


@pytest.fixture(scope="module")
def shipped_results_before_smoke_runs():
    return tracked_results()


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, shipped_results_before_smoke_runs):
    """Runs every recipe with --smoke in one subprocess; returns (root, status)."""
    root = tmp_path_factory.mktemp("recipes")
    empty = tmp_path_factory.mktemp("no_datasets")  # No TFDS or Keras copy of CIFAR-10 here.
    env = dict(
        os.environ,
        # Another backend than --backend's, so that a recipe importing Keras
        # before applying --backend fails (select_backend refuses the mismatch).
        KERAS_BACKEND="jax",
        TF_CPP_MIN_LOG_LEVEL="3",
        TFDS_DATA_DIR=str(empty / "tfds"),
        KERAS_HOME=str(empty / "keras"),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            DRIVER,
            str(root),
            json.dumps(list(RECIPES)),
            json.dumps(EXTRA_SMOKE_ARGUMENTS),
            SMOKE_BACKEND,
        ],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return root, json.loads((root / "status.json").read_text())


@needs_smoke_backend
@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_recipe_runs_in_smoke_mode_and_writes_its_outputs(smoke_runs, recipe):
    root, status = smoke_runs
    assert status[recipe] == "ok", status[recipe]
    directory = root / recipe
    results = json.loads((directory / "results.json").read_text())
    assert results["recipe"] == recipe
    assert results["smoke"] is True
    assert results["backend"] == SMOKE_BACKEND
    assert "SMOKE RUN" in (directory / "report.md").read_text()
    histories = json.loads((directory / "history.json").read_text())
    assert "teacher" in histories and histories["teacher"]["loss"]
    for model_name in RECIPES[recipe]:
        model = keras.saving.load_model(directory / f"{model_name}.keras")  # safe_mode=True
        assert model.output.shape[-1] == 10


@needs_smoke_backend
@pytest.mark.slow
@pytest.mark.parametrize("recipe", CIFAR_RECIPES)
def test_cifar_smoke_runs_say_they_used_random_stand_in_data(smoke_runs, recipe):
    root, _ = smoke_runs
    results = json.loads((root / recipe / "results.json").read_text())
    assert results["is_stand_in"] is True
    assert "RANDOM STAND-IN" in results["data"] and "NOT cifar10 results" in results["data"]
    assert "RANDOM STAND-IN" in (root / recipe / "report.md").read_text()


@needs_smoke_backend
@pytest.mark.slow
def test_cifar_recipe_without_cifar10_ends_with_the_datasets_error(smoke_runs):
    _, status = smoke_runs
    missing = status["missing_cifar10"]
    assert missing["exit_code"] == 2
    message = missing["stderr"][missing["stderr"].index("error: ") :]  # After any library warnings.
    assert message.startswith("error: No local copy of the dataset 'cifar10'"), missing["stderr"]
    assert "Traceback" not in missing["stderr"]


@needs_smoke_backend
@pytest.mark.slow
def test_resnet50_recipe_decays_temperature_and_alpha(smoke_runs):
    root, _ = smoke_runs
    history = json.loads((root / "cifar10_resnet50_to_resnet18" / "history.json").read_text())
    distilled = history["student_distilled"]
    # 4 steps of PolynomialDecay: the last step (3 of 4) logs T = 1 + 4/4, alpha = 0.1 + 0.8/4.
    assert distilled["temperature"][-1] == pytest.approx(2.0, abs=1e-5)
    assert distilled["alpha"][-1] == pytest.approx(0.3, abs=1e-5)
    assert distilled["feature_loss"][-1] > 0


@needs_smoke_backend
@pytest.mark.slow
def test_label_free_recipe_never_gives_labels_to_the_student_loss(smoke_runs):
    root, _ = smoke_runs
    history = json.loads((root / "cifar10_resnet18_labelfree" / "history.json").read_text())
    assert "student_loss" not in history["student_labelfree"]
    assert history["student_labelfree"]["alpha"] == [1.0]


# Argument handling needs no Keras training: it runs on every backend.


def test_smoke_sets_one_epoch_tiny_models_and_its_own_output_folder():
    def add_arguments(parser):
        support.add_architecture_arguments(parser, teacher="resnet50", student="resnet18")

    args = support.parse_args(
        "demo_recipe",
        "test",
        ["--smoke", "--epochs", "30"],
        epochs=10,
        datasets=("cifar10",),
        add_arguments=add_arguments,
    )
    assert (args.epochs, args.teacher, args.student) == (1, "small_cnn_student", "small_cnn_student")
    assert pathlib.Path(args.output_dir) == pathlib.Path("saved_models/smoke/demo_recipe")
    full = support.parse_args("demo_recipe", "test", [], epochs=10, datasets=("cifar10",), add_arguments=add_arguments)
    assert (full.epochs, full.teacher, full.dataset) == (10, "resnet50", "cifar10")
    assert pathlib.Path(full.output_dir) == pathlib.Path("saved_models/demo_recipe")


@needs_smoke_backend
@pytest.mark.slow
def test_smoke_runs_leave_the_shipped_result_files_untouched(shipped_results_before_smoke_runs, smoke_runs):
    after = tracked_results()
    changed = [path for path, digest in shipped_results_before_smoke_runs.items() if after.get(path) != digest]
    assert not changed, f"the smoke runs changed shipped results: {changed}"


def assert_apart_from_shipped_results(output_dir):
    """`output_dir` is ignored by git and holds none of the files that ship."""
    assert is_git_ignored(REPOSITORY / output_dir / "results.json"), output_dir
    shipped = [path for path in tracked_results() if path.startswith(pathlib.Path(output_dir).as_posix() + "/")]
    assert not shipped, f"a smoke run in {output_dir} would overwrite {shipped}"


@pytest.mark.parametrize(
    "recipe", [*RECIPES, "stdlib_byte_lm", "stdlib_hub_lm", "generation_addition", "distributed_mnist"]
)
def test_smoke_output_goes_where_git_ignores_it(recipe):
    args = support.parse_args(recipe, "test", ["--smoke"], epochs=1, datasets=("mnist_5k",))
    assert_apart_from_shipped_results(args.output_dir)


def test_tune_smoke_output_goes_where_git_ignores_it():
    # recipes/tune_temperature_alpha.py is `keras-kd tune` under a recipe's name.
    from keras_kd import cli
    from keras_kd.cli import tune

    parser = cli.build_parser()
    assert tune.output_dir_of(parser.parse_args(["tune"])) == os.path.join("saved_models", "tune_temperature_alpha")
    assert any(path.startswith("saved_models/tune_temperature_alpha/") for path in tracked_results())
    assert_apart_from_shipped_results(tune.output_dir_of(parser.parse_args(["tune", "--smoke"])))
    assert tune.output_dir_of(parser.parse_args(["tune", "--smoke", "--output-dir", "here"])) == "here"


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--dataset", "imagenet"], ["--backend", "numpy"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        support.parse_args("demo_recipe", "test", argv, epochs=10, datasets=("mnist_5k",))
    assert "error: argument" in capsys.readouterr().err


def test_smoke_data_for_cifar10_is_labelled_random_stand_in():
    data = support.load_data("cifar10", smoke=True)
    assert data.is_stand_in and "RANDOM STAND-IN" in data.description
    assert data.x_train.shape == (support.SMOKE_TRAIN_ROWS, 32, 32, 3)
    assert data.num_classes == 10


def test_train_refuses_augmentation_for_a_distiller():
    import keras_kd
    from keras_kd import models

    teacher = models.mlp_student((4, 4, 1), 3, (4,))
    distiller = keras_kd.Distiller(teacher, models.mlp_student((4, 4, 1), 3, (2,)))
    with pytest.raises(ValueError, match="Pass the augmentation to the Distiller"):
        support.train(distiller, None, epochs=1, batch_size=1, optimizer="adam", augmentation=keras.layers.Identity())


@needs_smoke_backend
@pytest.mark.slow
def test_patient_recipe_trains_every_method_at_every_budget(smoke_runs):
    root, _ = smoke_runs
    results = json.loads((root / "mnist_patient" / "results.json").read_text())
    history = json.loads((root / "mnist_patient" / "history.json").read_text())
    # --smoke: budgets of 3 and 6 steps, in whole epochs of 4 batches of 8.
    assert results["steps"] == {"3": 4, "6": 8}
    for budget, steps in results["steps"].items():
        assert set(results["gap_closed"]) == {"plain KD", "patient KD"}
        assert len(results["accuracies"]["labels only"][budget]) == 1
        assert len(history[f"labels only, {steps} steps, seed 0"]["loss"]) == steps // 4
        plain = history[f"plain KD, {steps} steps, seed 0"]
        assert plain["temperature"][-1] == pytest.approx(4.0) and plain["student_loss"]
        patient = history[f"patient KD, {steps} steps, seed 0"]
        # Label-free (alpha 1) at T=1: no label reaches the patient student.
        assert patient["temperature"][-1] == pytest.approx(1.0) and "student_loss" not in patient


# recipes/stdlib_byte_lm.py: a byte-level language model distilled per token.


@pytest.fixture
def byte_lm(monkeypatch):
    """recipes/stdlib_byte_lm.py as a module (its `import support` finds recipes/support.py)."""
    import importlib

    monkeypatch.syspath_prepend(str(REPOSITORY / "recipes"))
    return importlib.import_module("stdlib_byte_lm")


def test_byte_lm_corpus_is_split_by_file_and_scores_every_byte_but_each_files_first(byte_lm):
    splits = byte_lm.split_files(byte_lm.stdlib_files())
    names = {split: {name for name, _ in files} for split, files in splits.items()}
    assert sum(len(files) for files in names.values()) == len(byte_lm.STDLIB_MODULES)
    assert not (names["train"] & names["test"]) and not (names["validation"] & names["test"])
    assert len(names["test"]) == len(byte_lm.STDLIB_MODULES) // byte_lm.HELD_OUT_EVERY
    x, y, weight = byte_lm.held_out_windows(splits["test"], 64)
    assert x.shape == y.shape == weight.shape and x.shape[1] == 64
    assert weight.sum() == sum(len(content) - 1 for _, content in splits["test"])
    first_name, first = splits["test"][0]
    assert bytes(x[0].astype("uint8")) == first[:64] and bytes(y[0].astype("uint8")) == first[1:65], first_name


def test_byte_lm_bits_per_byte_is_8_for_uniform_logits_and_ignores_padding(byte_lm):
    import numpy as np

    uniform = keras.Sequential(
        [
            keras.Input((8,), dtype="int32"),
            keras.layers.Embedding(256, 4),
            keras.layers.Dense(256, kernel_initializer="zeros"),
        ]
    )
    files = [("a.py", b"import os\n"), ("b.py", b"x = 1\n")]
    x, y, weight = byte_lm.held_out_windows(files, 8)
    assert weight.sum() == 9 + 5 and (weight == 0).any()
    assert byte_lm.bits_per_byte(uniform, x, y, weight) == pytest.approx(8.0, abs=1e-6)
    trained = byte_lm.byte_transformer(8, 8, 1, 2, "tiny")
    score = byte_lm.bits_per_byte(trained, x, y, weight)
    changed = np.where(weight == 0, (y + 7) % 256, y)
    assert byte_lm.bits_per_byte(trained, x, changed, weight) == pytest.approx(score, rel=1e-9)
    assert byte_lm.bits_per_byte(trained, x, (y + 7) % 256, weight) != pytest.approx(score, rel=1e-6)


@needs_smoke_backend
@pytest.mark.slow
def test_byte_lm_recipe_distils_per_token_in_smoke_mode(byte_lm, tmp_path):
    results = byte_lm.main(["--smoke", "--backend", SMOKE_BACKEND, "--output-dir", str(tmp_path)])
    assert results["smoke"] is True and results["backend"] == SMOKE_BACKEND
    assert "SMOKE RUN" in (tmp_path / "report.md").read_text()
    assert set(results["runs"]) == set(byte_lm.METHODS)
    for runs in results["runs"].values():
        # A few steps from random weights: close to log2(256) = 8 bits.
        assert len(runs) == 1 and 6.0 < runs[0]["bits_per_byte"] < 9.0
    # The budget and alpha come from the validation grid, where every setting was scored.
    chosen, grid = results["chosen"], results["validation_grid"]
    settings = byte_lm.SMOKE_SETTINGS
    assert chosen["budget"] in settings["budgets"] and chosen["alpha"] in (0.5, 1.0)
    assert set(grid) == {"labels only", "forward KL, alpha=0.5", "forward KL, alpha=1.0"}
    assert all(set(scores) == {str(steps) for steps in settings["budgets"]} for scores in grid.values())
    # Labels only is scored at every checkpoint, which include the budget and its equal-time steps.
    curve = results["runs"]["labels only"][0]["curve"]
    assert set(curve) == {str(steps) for steps in chosen["checkpoints"]} and str(chosen["budget"]) in curve
    for divergence in byte_lm.DIVERGENCES:
        assert results["equal_time_steps"][f"{divergence}, uncached"] == chosen["budget"]
        assert str(results["equal_time_steps"][f"labels only, the time of {divergence}"]) in curve
        for source in byte_lm.TEACHER_SOURCES:
            (record,) = results["equal_time"][f"{divergence}, {source}"]
            assert record["steps"] == results["equal_time_steps"][f"{divergence}, {source}"]
            assert (record["bits_per_byte"] is None) == (record["steps"] == 0)
    histories = json.loads((tmp_path / "history.json").read_text())
    assert "distillation_loss" not in histories["labels only seed 0"]
    for method in byte_lm.METHODS[1:]:
        assert histories[f"{method} seed 0"]["distillation_loss"][0] > 0
    for name in (
        "teacher",
        "student_labels_only",
        "student_forward_KL",
        "student_reverse_KL",
        "student_generalized_JSD",
    ):
        model = keras.saving.load_model(tmp_path / f"{name}.keras")  # safe_mode=True
        assert tuple(model.output.shape) == (None, byte_lm.SMOKE_SETTINGS["context"], 256)


def test_byte_lm_trains_exactly_the_steps_asked_and_keeps_each_checkpoint(byte_lm):
    import numpy as np

    files = [("a.py", b"import os\nimport sys\n" * 4)]
    windows = byte_lm.random_windows(files, context=8, batch_size=2, steps_per_epoch=2, seed=0)
    student = byte_lm.byte_transformer(8, 8, 1, 2, "student")
    initial = student.get_weights()
    _, clock, _ = byte_lm.train_steps(
        student, student, windows, steps=5, batches_per_epoch=2, learning_rate=1e-2, warmup_steps=1, checkpoints=(2, 5)
    )
    assert len(clock.times) == 5 and set(clock.weights) == {2, 5}
    assert all(np.array_equal(a, b) for a, b in zip(clock.weights[5], student.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(clock.weights[2], clock.weights[5]))
    assert not all(np.array_equal(a, b) for a, b in zip(initial, clock.weights[2]))


def test_byte_lm_labels_only_steps_to_reach_interpolate_between_checkpoints(byte_lm):
    curve = {100: 3.0, 200: 2.5, 400: 2.0}
    assert byte_lm.steps_to_reach(curve, 2.25) == {"steps": pytest.approx(300.0), "bound": "="}
    assert byte_lm.steps_to_reach(curve, 2.5) == {"steps": pytest.approx(200.0), "bound": "="}
    assert byte_lm.steps_to_reach(curve, 3.5) == {"steps": 100, "bound": "<="}
    assert byte_lm.steps_to_reach(curve, 1.0) == {"steps": 400, "bound": ">"}


def test_byte_lm_bits_per_byte_matches_the_distillers_weighted_student_loss(byte_lm):
    import math

    import keras_kd

    files = [("a.py", b"import os\nimport sys\n"), ("b.py", b"x = 1\n")]
    x, y, weight = byte_lm.held_out_windows(files, 8)
    teacher = byte_lm.byte_transformer(8, 16, 1, 2, "teacher")
    student = byte_lm.byte_transformer(8, 8, 1, 2, "student")
    distiller = keras_kd.Distiller(teacher, student, temperature=1.0, alpha=0.5)
    distiller.compile(optimizer="adam")
    # One batch: the padded positions (weight 0) are left out of both means.
    logs = distiller.evaluate(x, y, sample_weight=weight, batch_size=len(x), return_dict=True, verbose=0)
    nats = byte_lm.bits_per_byte(student, x, y, weight) * math.log(2)
    assert logs["student_loss"] == pytest.approx(nats, rel=1e-5)


@pytest.mark.slow
def test_patient_recipe_distils_from_a_view_cache(tmp_path, monkeypatch):
    import runpy

    monkeypatch.syspath_prepend(str(REPOSITORY / "recipes"))  # The recipe's `import support`.
    main = runpy.run_path(str(REPOSITORY / "recipes" / "mnist_patient.py"))["main"]
    results = main(
        ["--smoke", "--view-cache", "2", "--methods", "labels only", "patient KD", "--output-dir", str(tmp_path)]
    )
    assert results["backend"] == REQUESTED_BACKEND
    assert list(results["view_cache_seconds"]) == [0]  # Built once, for seed 0.
    history = json.loads((tmp_path / "history.json").read_text())
    patient = history["patient KD, 8 steps, seed 0"]
    # Two epochs, each row in one of its 2 cached views; no teacher in the step, no label.
    assert len(patient["loss"]) == 2 and "student_loss" not in patient
    assert "2 cached augmented views" in (tmp_path / "report.md").read_text()


# recipes/stdlib_hub_lm.py: a KerasHub Llama 3 over bytes, half-depth students from random weights or the teacher.


@pytest.fixture
def hub_lm(monkeypatch):
    """recipes/stdlib_hub_lm.py as a module (its imports find recipes/support.py and recipes/stdlib_byte_lm.py)."""
    import importlib

    monkeypatch.syspath_prepend(str(REPOSITORY / "recipes"))
    return importlib.import_module("stdlib_hub_lm")


def test_hub_lm_batches_are_the_byte_lm_windows_as_keras_hub_inputs(hub_lm, byte_lm):
    import numpy as np

    files = [("a.py", bytes(range(40))), ("b.py", bytes(range(100, 160)))]

    def windows():
        return byte_lm.random_windows(files, context=8, batch_size=4, steps_per_epoch=2, seed=3)

    plain, batches = windows(), hub_lm.token_batches(windows())
    assert len(batches) == len(plain) == 2
    first_epoch = batches[0][1]
    for _ in range(2):
        for index in range(2):
            x, y = plain[index]
            inputs, labels = batches[index]
            assert set(inputs) == {"token_ids", "padding_mask"} and inputs["padding_mask"].all()
            np.testing.assert_array_equal(inputs["token_ids"], x)
            np.testing.assert_array_equal(labels, y)
        plain.on_epoch_end()
        batches.on_epoch_end()
    # The epoch reaches the windows: the next epoch draws other windows.
    assert not np.array_equal(batches[0][1], first_epoch)


def test_hub_lm_student_from_the_teacher_gets_its_even_layers_and_matches_its_odd_ones(hub_lm):
    import types

    import numpy as np

    from keras_kd import students

    args = types.SimpleNamespace(width=8, heads=2)
    keras.utils.set_random_seed(0)
    teacher = hub_lm.causal_lm(args, 4, "teacher")
    student = hub_lm.causal_lm(args, 2, "student")
    student.set_weights(students.from_teacher(teacher, num_layers=2).get_weights())

    def layer(model, index):
        return model.get_layer(model.backbone.name).get_layer(f"transformer_layer_{index}")

    for student_index, teacher_index in ((0, 0), (1, 2)):
        for own, copied in zip(layer(student, student_index).weights, layer(teacher, teacher_index).weights):
            np.testing.assert_array_equal(np.asarray(own), np.asarray(copied))
    np.testing.assert_array_equal(
        np.asarray(student.backbone.token_embedding.embeddings), np.asarray(teacher.backbone.token_embedding.embeddings)
    )
    matches = hub_lm.hidden_state_matches(teacher, student, 0.5)
    assert [(match.teacher_layer, match.student_layer) for match in matches] == [
        ("teacher_backbone/transformer_layer_1", "student_backbone/transformer_layer_0"),
        ("teacher_backbone/transformer_layer_3", "student_backbone/transformer_layer_1"),
    ]
    assert all(match.weight == 0.5 and match.loss.name == "cosine" for match in matches)


@needs_smoke_backend
@pytest.mark.slow
def test_hub_lm_recipe_trains_both_starts_by_every_method_in_smoke_mode(hub_lm, tmp_path):
    results = hub_lm.main(["--smoke", "--backend", SMOKE_BACKEND, "--output-dir", str(tmp_path)])
    assert results["smoke"] is True and results["backend"] == SMOKE_BACKEND
    report = (tmp_path / "report.md").read_text()
    assert "SMOKE RUN" in report and f"Expected beforehand: {hub_lm.EXPECTED}" in report
    assert list(results["runs"]) == list(hub_lm.INITIALISATIONS)
    # w is chosen per start from the validation grid, where every weight was scored.
    weights = results["settings"]["feature_weights"]
    for initialisation in hub_lm.INITIALISATIONS:
        grid = results["validation_grid"][initialisation]
        assert set(grid) == {str(weight) for weight in weights}
        assert results["chosen_feature_weight"][initialisation] == min(weights, key=lambda weight: grid[str(weight)])
        assert list(results["runs"][initialisation]) == list(hub_lm.METHODS)
        for runs in results["runs"][initialisation].values():
            # A few steps of tiny models: close to log2(256) = 8 bits.
            assert len(runs) == 1 and 6.0 < runs[0]["bits_per_byte"] < 9.0
    assert results["teacher"]["parameters"] > results["student_parameters"] > 0
    histories = json.loads((tmp_path / "history.json").read_text())
    student_layers = hub_lm.SMOKE_SETTINGS["teacher_depth"] // 2
    for initialisation in hub_lm.INITIALISATIONS:
        feature_terms = [f"cosine_student_backbone_transformer_layer_{layer}" for layer in range(student_layers)]
        hidden = histories[f"{initialisation}, logit + hidden-state KD seed 0"]
        assert all(hidden[term][-1] >= 0 for term in feature_terms)
        logit = histories[f"{initialisation}, logit KD seed 0"]
        assert logit["distillation_loss"] and not any(term in logit for term in feature_terms)
        assert "distillation_loss" not in histories[f"{initialisation}, labels only seed 0"]
    student = keras.saving.load_model(tmp_path / "student_from_teacher_logit_hidden_state_KD.keras")
    assert student.backbone.num_layers == student_layers


# recipes/ensemble_into_one.py: an ensemble of MLPs distilled into one MLP.


@pytest.fixture
def ensemble_recipe(monkeypatch):
    """The names of recipes/ensemble_into_one.py, run as a script is (its `import support` finds support.py)."""
    import runpy
    import types

    monkeypatch.syspath_prepend(str(REPOSITORY / "recipes"))
    return types.SimpleNamespace(**runpy.run_path(str(REPOSITORY / "recipes" / "ensemble_into_one.py")))


def test_ensemble_recipe_serves_the_mean_softmax_and_computes_the_share_of_the_gain_kept(ensemble_recipe):
    import numpy as np

    from keras_kd import models

    members = [models.mlp_student((4,), 3, (5,), name=f"member_{index}") for index in range(3)]
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    probabilities = [keras.ops.convert_to_numpy(keras.ops.softmax(member(x))) for member in members]
    served = ensemble_recipe.ensemble_model(members, (4,)).predict(x, verbose=0)
    np.testing.assert_allclose(served, np.mean(probabilities, axis=0), rtol=1e-5, atol=1e-7)
    assert ensemble_recipe.share_kept(single=0.90, ensemble=0.95, distilled=0.94) == pytest.approx(0.8)
    assert ensemble_recipe.share_kept(single=0.90, ensemble=0.95, distilled=0.89) == pytest.approx(-0.2)
    assert ensemble_recipe.share_kept(single=0.90, ensemble=0.90, distilled=0.94) is None
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    expected = -(np.log(np.exp(2.0) / np.exp(logits[0]).sum()) + np.log(1 / 3)) / 2
    assert ensemble_recipe.cross_entropy(logits, np.array([0, 1])) == pytest.approx(expected)
    args = support.parse_args("ensemble_into_one", "test", ["--smoke"], epochs=1, datasets=("both",))
    assert_apart_from_shipped_results(args.output_dir)


@needs_smoke_backend
@pytest.mark.slow
def test_ensemble_recipe_distils_its_members_on_both_datasets_in_smoke_mode(ensemble_recipe, tmp_path):
    results = ensemble_recipe.main(["--smoke", "--backend", SMOKE_BACKEND, "--output-dir", str(tmp_path)])
    assert results["smoke"] is True and results["backend"] == SMOKE_BACKEND
    report = (tmp_path / "report.md").read_text()
    assert "SMOKE RUN" in report and f"Expected beforehand: {ensemble_recipe.EXPECTED}" in report
    histories = json.loads((tmp_path / "history.json").read_text())
    settings = ensemble_recipe.SMOKE_SETTINGS
    for dataset in ("mnist_5k", "digits"):
        (run,) = results["datasets"][dataset]["runs"]
        assert len(run["test_accuracy"]["members"]) == settings["members"]
        assert run["parameters"]["ensemble"] == settings["members"] * run["parameters"]["distilled"]
        # T and alpha are the validation grid's best; every grid point was trained from the cached members.
        assert len(run["grid"]) == len(settings["temperatures"]) * len(settings["alphas"])
        best = max(run["grid"], key=lambda point: (point["validation_accuracy"], -point["validation_cross_entropy"]))
        assert run["chosen"] == {"temperature": best["temperature"], "alpha": best["alpha"]}
        for point in run["grid"]:
            distilled = histories[f"{dataset} seed 0 distilled T={point['temperature']:g} alpha={point['alpha']:g}"]
            assert distilled["temperature"] == [pytest.approx(point["temperature"])]
            assert distilled["distillation_loss"][0] > 0
        for model in ("ensemble", "distilled"):
            assert set(run["predict_ms"][model]) == {"test split", "one image"}
        for name in (f"{dataset}_member_0", f"{dataset}_single", f"{dataset}_distilled"):
            assert keras.saving.load_model(tmp_path / f"{name}.keras").output.shape[-1] == 10


# recipes/generation_addition.py: addition answered by generation, distilled off- and on-policy.


@pytest.fixture
def addition(monkeypatch):
    """recipes/generation_addition.py as a module (its `import support` finds recipes/support.py)."""
    import importlib

    monkeypatch.syspath_prepend(str(REPOSITORY / "recipes"))
    return importlib.import_module("generation_addition")


def test_addition_problems_are_sums_written_least_significant_digit_first_in_disjoint_splits(addition):
    import numpy as np

    import keras_kd

    def number(tokens):
        return sum((token - addition.ZERO) * 10**place for place, token in enumerate(tokens))

    splits = addition.problems(200, 50)
    pairs = {}
    for name, (prompts, answers) in splits.items():
        assert len(prompts) == len(answers) == (200 if name == "train" else 50), name
        pairs[name] = set()
        for prompt, answer in zip(prompts, answers):
            assert len(prompt) == addition.PROMPT_TOKENS and len(answer) == addition.ANSWER_TOKENS
            assert (prompt[addition.DIGITS], prompt[-1]) == (addition.PLUS, addition.EQUALS)
            first, second = number(prompt[: addition.DIGITS]), number(prompt[addition.DIGITS + 1 : -1])
            assert number(answer) == first + second
            pairs[name].add((first, second))
    assert len(pairs["train"] | pairs["validation"] | pairs["test"]) == 300
    assert (
        addition.decode(addition.digit_tokens(123, 3) + [addition.PLUS] + addition.digit_tokens(579, 4)) == "321+9750"
    )
    # Every row fills the sequence: start, prompt, answer, end; the answer and the end token are the targets.
    x, y, sample_weight = keras_kd.prompts.layout(
        *splits["test"], addition.SEQUENCE_LENGTH, start_token_id=addition.START, end_token_id=addition.END
    )
    assert x["padding_mask"].all() and (x["token_ids"][:, -1] == addition.END).all()
    np.testing.assert_array_equal(y[:, -2 - addition.ANSWER_TOKENS : -2], np.array(splits["test"][1]))
    assert (sample_weight.sum(axis=1) == addition.ANSWER_TOKENS + 1).all()


def test_addition_exact_match_needs_every_answer_digit_then_the_end_token(addition):
    import numpy as np

    end, answer = addition.END, [5, 6, 7, 8]
    generated = np.array(
        [
            [5, 6, 7, 8, end, 9],  # right (what follows the end token does not count)
            [5, 6, 7, 9, end, 0],  # a digit wrong
            [5, 6, 7, 8, 5, end],  # no end token after the answer
            [5, 6, 7, end, 0, 0],  # stopped a digit early
        ]
    )
    exact, digits = addition.score_answers(generated, [answer] * 4)
    assert exact == pytest.approx(0.25)
    assert digits == pytest.approx((4 + 3 + 4 + 3) / 16)
    with pytest.raises(ValueError, match="4 generated tokens per row; the answer needs 5"):
        addition.score_answers(generated[:, :4], [answer] * 4)


def test_addition_greedy_answers_are_the_models_own_argmax_continuations(addition):
    import numpy as np

    keras.utils.set_random_seed(0)
    model = addition.causal_lm(8, "tiny")
    prompts, _ = addition.problems(4, 4)["test"]
    generated = addition.generated_answers(model, prompts)
    assert generated.shape == (4, addition.ANSWER_TOKENS + 1)
    # The same continuation, one full forward pass per token, no cache and no sampler.
    length, prompt_end = addition.SEQUENCE_LENGTH, addition.PROMPT_TOKENS + 1
    tokens = np.zeros((4, length), "int32")
    tokens[:, 0], tokens[:, 1:prompt_end] = addition.START, prompts
    for position in range(prompt_end, length):
        mask = np.broadcast_to(np.arange(length) < position, tokens.shape)
        logits = keras.ops.convert_to_numpy(model.predict_on_batch({"token_ids": tokens, "padding_mask": mask}))
        tokens[:, position] = logits[:, position - 1].argmax(axis=-1)
    expected = tokens[:, prompt_end:]
    for row in range(4):
        stops = np.flatnonzero(expected[row] == addition.END)
        compared = stops[0] + 1 if stops.size else expected.shape[1]
        np.testing.assert_array_equal(generated[row, :compared], expected[row, :compared])


def test_addition_default_student_is_at_least_8x_smaller_than_the_teacher(addition):
    args = support.parse_args(
        addition.RECIPE, "test", [], epochs=1, datasets=("addition",), add_arguments=addition.add_arguments
    )
    teacher = addition.causal_lm(args.teacher_width, "teacher")
    student = addition.causal_lm(args.student_width, "student")
    assert support.parameter_count(teacher) >= addition.MIN_SIZE_RATIO * support.parameter_count(student)


@needs_smoke_backend
@pytest.mark.slow
def test_generation_recipe_trains_every_method_in_smoke_mode(addition, tmp_path):
    results = addition.main(["--smoke", "--backend", SMOKE_BACKEND, "--output-dir", str(tmp_path)])
    assert results["smoke"] is True and results["backend"] == SMOKE_BACKEND
    report = (tmp_path / "report.md").read_text()
    assert "SMOKE RUN" in report and f"Expected beforehand: {addition.EXPECTED}" in report
    assert list(results["runs"]) == list(addition.METHODS)
    histories = json.loads((tmp_path / "history.json").read_text())
    for method, (run,) in results["runs"].items():
        assert 0.0 <= run["exact_match"] <= run["digit_accuracy"] <= 1.0
        assert run["seconds"] > 0 and run["tokens_per_second"] > 0
        history = histories[f"{method} seed 0"]
        # SFT is the student's own fit; every other method distils (the distillation term only, alpha=1).
        assert ("distillation_loss" in history) == (method != "SFT") and "student_loss" not in history
    assert 0.0 <= results["teacher"]["scores"]["test"]["exact_match"] <= 1.0
    for name in ("teacher", "student_SFT", "student_on_policy_reverse_KL_lmbda_1"):
        model = keras.saving.load_model(tmp_path / f"{name}.keras")  # safe_mode=True
        assert model.backbone.vocabulary_size == addition.VOCABULARY_SIZE
