"""The benchmark harness: a smoke run end to end, the report, the PyTorch twins, the GPU suite."""

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_kd
from bench import report, runner, torch_loop, workload
from bench.pairs import PAIRS
from conftest import REQUESTED_BACKEND


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One `python -m bench --smoke` run on this backend, shared by the tests below.

    Ten configurations, each with its own Keras train step to build: about a
    minute of CPU on JAX (30-40 s on TensorFlow and torch), hence `slow`.
    """
    directory = tmp_path_factory.mktemp("bench")
    output, results = directory / "BENCHMARKS.md", directory / "results.json"
    status = runner.main(["--smoke", "--backend", REQUESTED_BACKEND, "--output", str(output), "--json", str(results)])
    return status, output, json.loads(results.read_text())


def test_backend_is_the_requested_one():
    assert keras.config.backend() == REQUESTED_BACKEND


@pytest.mark.slow
def test_smoke_run_times_every_configuration(smoke_run):
    status, _, data = smoke_run
    assert status == 0
    results = data["results"]
    assert [r for r in results if "error" in r] == []
    main = {r["config"]: r for r in results if r["group"] == "main"}
    assert set(main) == set(workload.CONFIGS)
    for config, result in main.items():
        expected_backend = "pytorch" if config in workload.TORCH_CONFIGS else REQUESTED_BACKEND
        assert result["backend"] == expected_backend
        assert len(result["epoch_seconds"]) == 1 and result["seconds"] > 0
        assert result["images_per_second"] == pytest.approx(result["images"] / result["seconds"])
        assert result["peak_rss_mb"] >= result["rss_before_mb"] > 0
    assert main["kd_cached"]["cache_build_seconds"] > 0
    scaling = [r for r in results if r["group"] == "scaling"]
    assert {r["config"] for r in scaling} == set(runner.SCALING_CONFIGS)
    assert {r["batch_size"] for r in scaling} == set(runner.SCALING_BATCH_SIZES[True])


@pytest.mark.slow
def test_pytorch_twins_match_the_keras_pair(smoke_run):
    # Same layers and sizes: the trainable parameter counts agree exactly.
    results = {r["config"]: r for r in smoke_run[2]["results"] if r["group"] == "main"}
    for role in ("teacher_parameters", "student_parameters"):
        assert results["torch_logits"][role] == results["kd_logits"][role]
    # The full-size twins, against the counts of the Keras builders
    # (small_cnn_teacher(); small_cnn_student(dense_units=512)).
    teacher, student = torch_loop.small_pair(smoke=False)
    assert torch_loop.count_parameters(teacher) == 4_694_346
    assert torch_loop.count_parameters(student) == 169_098


@pytest.mark.slow
def test_report_has_tables_ratios_machine_and_command(smoke_run):
    _, output, _ = smoke_run
    text = output.read_text()
    for config_label in workload.CONFIGS.values():
        assert f"| {config_label} |" in text
    for name, _, _, _ in report.TARGETS:
        assert name in text
    assert "Best keras_kd backend against the pure-PyTorch loop" in text
    assert "Scaling with batch size" in text
    assert f"python -m bench --smoke --backend {REQUESTED_BACKEND}" in text
    assert "Load average" in text
    assert "No GPU" in text
    # The plot of the targeted ratios, beside the page and shown on it.
    assert "![" in text and "(BENCHMARKS.png)" in text
    assert (output.parent / "BENCHMARKS.png").read_bytes().startswith(b"\x89PNG")
    assert "## What is measured" in text


@pytest.mark.slow
def test_rewriting_replaces_the_whole_page(smoke_run, tmp_path):
    # The page describes one run: nothing of an earlier page survives a rewrite.
    _, output, data = smoke_run
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(output.read_text() + "\n## Analysis\n\nProfiles by hand.\n")
    report.write(str(target), data["run"], data["results"])
    text = target.read_text()
    assert "Profiles by hand" not in text
    assert text == output.read_text()


def test_ratios_and_verdicts():
    by_key = {
        ("jax", "kd_logits"): {"seconds": 3.0},
        ("jax", "student"): {"seconds": 1.0},
        ("jax", "teacher_inference"): {"seconds": 2.0},
        ("jax", "core_logits"): {"seconds": 2.0, "error": "boom"},
    }
    assert report._ratio(by_key, "jax", ("kd_logits",), ("student", "teacher_inference")) == 1.0
    assert report._ratio(by_key, "jax", ("kd_logits",), ("core_logits",)) is None
    assert report._verdict(1.0, 1.10) == "1.00 met"
    # Rounded to the limit, a value shows which side of it it is on.
    assert report._verdict(1.003, 1.00) == "1.003 **missed**"
    assert report._verdict(0.998, 1.00) == "0.998 met" and report._verdict(1.0, 1.00) == "1.00 met"
    assert report._verdict(1.2, 1.10) == "1.20 **missed**"
    assert report._verdict(0.9, 1.0, at_least=True) == "0.90 **missed**"


@pytest.mark.parametrize(
    "arguments",
    [
        ["--repeats", "0"],
        ["--epochs-per-fit", "0"],
        ["--backend", "mxnet"],
        ["--configs", "nothing"],
        ["--pairs", "vgg"],
        ["--batch-size", "0"],
        ["--dtype-policy", "float64"],
    ],
)
def test_bad_arguments_are_refused(arguments, capsys):
    with pytest.raises(SystemExit):
        runner.parse_args(arguments)
    assert "error" in capsys.readouterr().err


def test_batch_size_and_dtype_policy_reach_every_spec():
    args = runner.parse_args(
        [
            "--backend",
            "jax",
            "torch",
            "--pairs",
            "resnet",
            "--batch-size",
            "16",
            "--images",
            "40",
            "--dtype-policy",
            "mixed_bfloat16",
            "--no-scaling",
        ]
    )
    specs = runner.plan(args)
    assert {spec["backend"] for spec in specs} == {"jax", "torch"}
    assert {(spec["batch_size"], spec["images"], spec["dtype_policy"]) for spec in specs} == {
        (16, 32, "mixed_bfloat16")
    }


def test_report_names_the_gpu_and_the_policy():
    assert report._accelerator_line("NVIDIA H200", "mixed_bfloat16") == (
        "- GPU: NVIDIA H200; Keras dtype policy mixed_bfloat16."
    )
    assert report._accelerator_line(None, "float32").startswith("- No GPU was available")


def test_workloads_run_under_a_mixed_policy():
    spec = {
        "pair": "small",
        "images": 8,
        "batch_size": 4,
        "repeats": 1,
        "warmup_steps": 1,
        "smoke": True,
        "dtype_policy": "mixed_bfloat16",
    }
    torch_result = workload.run(dict(spec, config="torch_logits"))
    assert torch_result["torch_device"] == "cpu" and torch_result["seconds"] > 0
    workload.run(dict(spec, config="teacher_inference"))
    assert keras.config.dtype_policy().name == "mixed_bfloat16"


def test_bad_spec_is_refused_with_the_valid_values():
    spec = {
        "pair": "small",
        "config": "kd_logits",
        "images": 10,
        "batch_size": 4,
        "repeats": 1,
        "warmup_steps": 1,
        "smoke": True,
    }
    with pytest.raises(ValueError, match="multiple of batch_size"):
        workload.run(spec)
    with pytest.raises(ValueError, match="valid"):
        workload.run(dict(spec, config="distil"))


# ------------------------------------------------- the overhead-bound pair


def test_overhead_pair_runs_interleaved_in_one_process_per_backend():
    specs = runner.plan(runner.parse_args(["--backend", "jax", "torch", "--pairs", "overhead"]))
    keras_configs = ["student", "teacher_inference", "kd_logits", "kd_cached", "core_logits"]
    assert [(spec["backend"], spec["configs"]) for spec in specs] == [
        ("jax", keras_configs),
        ("pytorch", ["torch_logits", "torch_student", "torch_cached"]),
        ("torch", keras_configs),
    ]
    assert {(spec["images"], spec["batch_size"], spec["repeats"], spec["epochs_per_fit"]) for spec in specs} == {
        (16384, 512, 3, 3)
    }
    # The other pairs keep one process per configuration, their repeats and whole fit calls.
    small = runner.plan(runner.parse_args(["--backend", "jax", "--pairs", "small", "--no-scaling"]))
    assert all("config" in spec and spec["repeats"] == 2 and spec["epochs_per_fit"] == 1 for spec in small)
    whole_calls = runner.plan(runner.parse_args(["--backend", "jax", "--pairs", "overhead", "--epochs-per-fit", "1"]))
    assert {spec["epochs_per_fit"] for spec in whole_calls} == {1}
    interleaved = runner.plan(
        runner.parse_args(["--backend", "jax", "--pairs", "small", "--no-scaling", "--interleave"])
    )
    assert [len(spec["configs"]) for spec in interleaved] == [8, 4]


def _overhead_smoke_spec(configs, **changes):
    """A tiny interleaved spec of the overhead-bound pair: two rounds of `configs`."""
    spec = {
        "pair": "overhead",
        "configs": configs,
        "images": 32,
        "batch_size": 16,
        "repeats": 2,
        "warmup_steps": 1,
        "smoke": True,
    }
    return {**spec, **changes}


def test_interleaved_run_times_every_configuration_in_each_round():
    spec = _overhead_smoke_spec(["student", "kd_cached", "core_logits"])
    results = workload.run_interleaved(spec)
    assert [r["config"] for r in results] == spec["configs"]
    for result in results:
        assert result["interleaved"] and len(result["epoch_seconds"]) == 2
        assert result["seconds"] == min(result["epoch_seconds"]) > 0
        assert "configs" not in result
    assert len({r["peak_rss_mb"] for r in results}) <= len(results)
    assert results[1]["cache_build_seconds"] > 0


def test_epochs_timed_inside_a_fit_leave_its_set_up_out():
    spec = _overhead_smoke_spec(["student", "kd_cached"], epochs_per_fit=3)
    started = time.perf_counter()
    results = workload.run_interleaved(spec)
    elapsed = time.perf_counter() - started
    for result in results:
        assert result["epochs_per_fit"] == 3 and len(result["epoch_seconds"]) == 2
        # Each repeat is the fastest of its fit's three epochs: less than a third of all the fits took.
        assert 0 < result["seconds"] < elapsed / 3
    single = {key: value for key, value in spec.items() if key != "configs"}
    assert workload.run({**single, "config": "teacher_inference"})["seconds"] > 0


def test_the_pytorch_loop_on_precomputed_logits_and_its_student_alone():
    spec = _overhead_smoke_spec(["torch_logits", "torch_student", "torch_cached"])
    results = workload.run_interleaved(spec)
    assert [r["config"] for r in results] == spec["configs"]
    assert all(r["backend"] == "pytorch" and r["seconds"] > 0 for r in results)
    text = "\n".join(report._pytorch_section(results))
    ratio = results[2]["seconds"] / results[1]["seconds"]
    assert f"takes {ratio:.2f}x the student alone's epoch" in text
    # Features come from the teacher's forward pass, which precomputed logits skip.
    teacher, student = torch_loop.mlp_pair(smoke=True)
    with pytest.raises(ValueError, match="hold no features"):
        torch_loop.distillation_epoch(
            teacher,
            student,
            torch_loop.torch.optim.Adam(student.parameters()),
            torch_loop.torch.zeros(4, 784),
            torch_loop.torch.zeros(4, dtype=torch_loop.torch.int64),
            2,
            feature_weight=1.0,
            teacher_logits=torch_loop.torch.zeros(4, 10),
        )


def test_cached_step_script_times_both_and_refuses_bad_sizes(capsys):
    from bench import cached_step

    fastest, median, paired = cached_step.main(["--epochs", "2", "--rows", "1024"])
    assert set(fastest) == set(median) == {"student", "cached"} and min(fastest.values()) > 0
    assert set(paired) == {"cached"} and paired["cached"] > 0
    assert "cached / student" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cached_step.main(["--rows", "1000"])


def test_paired_ratios_are_the_median_of_each_rounds_ratio():
    from bench import cached_step

    seconds = {"student": [1.0, 2.0, 4.0], "cached": [1.1, 2.6, 4.4]}
    # Rounds 1.1, 1.3, 1.1: the slow middle round moves neither the median nor the fastest.
    assert cached_step.paired_ratios(seconds, "student") == {"cached": pytest.approx(1.1)}


def test_cached_step_ablations_train_on_the_cache_and_are_timed(capsys):
    from bench import cached_step

    fastest, _, _ = cached_step.main(["--epochs", "1", "--rows", "1024", "--ablations"])
    assert set(fastest) == {"student", "cached", "no_logs", "bare_kd"} and min(fastest.values()) > 0
    out = capsys.readouterr().out
    assert "no_logs / student" in out and "bare_kd / student" in out


def _refused_off(backend, flag, arguments, capsys):
    """On any backend but `backend`, checks that `bench.cached_step` refuses `flag`, and returns True."""
    from bench import cached_step

    if keras.config.backend() == backend:
        return False
    with pytest.raises(SystemExit):
        cached_step.main(arguments)
    assert f"{flag} needs KERAS_BACKEND={backend}" in capsys.readouterr().err
    return True


def test_cached_step_eager_steps_are_timed_on_torch_only(capsys):
    from bench import cached_step

    arguments = ["--epochs", "1", "--rows", "1024", "--eager-steps"]
    if _refused_off("torch", "--eager-steps", arguments, capsys):
        return
    cached_step.main(arguments)
    out = capsys.readouterr().out
    assert "train functions alone: student" in out and "cached" in out.split("train functions alone:")[1]


def test_cached_step_compiled_steps_are_timed_and_counted_on_jax_only(capsys):
    from bench import cached_step

    arguments = ["--epochs", "1", "--rows", "1024", "--ablations", "--compiled-steps"]
    if _refused_off("jax", "--compiled-steps", arguments, capsys):
        return
    cached_step.main(arguments)
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("compiled steps alone: student ")
    for name in ("cached", "no_logs", "bare_kd"):
        assert f" {name} " in line
    # Each step has kernels; the Distiller's KD adds some to the student's.
    counts = [int(part.split("(")[1].split()[0]) for part in line.split(", ")]
    assert min(counts) > 0 and counts[1] > counts[0]


@pytest.mark.parametrize("name", ["no_logs", "bare_kd"])
def test_cached_step_ablation_learns_and_logs_its_loss_alone(name):
    from bench import cached_step

    rng = np.random.default_rng(0)
    x, y = rng.random((256, 8), dtype="float32"), rng.integers(0, 3, 256)
    keras.utils.set_random_seed(0)
    teacher = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(8,))
    distiller = cached_step.ABLATIONS[name](teacher, student, temperature=4.0, alpha=0.9)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
    data = keras_kd.TeacherCache.for_distiller(distiller, x, batch_size=64).dataset(x, y, batch_size=64)
    history = distiller.fit(data, epochs=5, verbose=0).history
    assert set(history) == {"loss"}
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]


def test_mlp_twins_match_the_keras_pair():
    teacher, student = torch_loop.mlp_pair(smoke=False)
    keras_teacher = PAIRS["overhead"].build_teacher(False)
    keras_student = PAIRS["overhead"].build_student(False)
    assert torch_loop.count_parameters(teacher) == keras_teacher.count_params() == 1_863_690
    assert torch_loop.count_parameters(student) == keras_student.count_params() == 25_450


def test_overhead_targets_and_console_verdicts():
    results = [
        {"pair": "overhead", "backend": "jax", "config": config, "seconds": seconds, "group": "main"}
        for config, seconds in (("student", 1.0), ("kd_cached", 1.05), ("kd_logits", 2.2), ("core_logits", 2.0))
    ]
    assert report.verdict_lines(results) == [
        "overhead jax: cached KD (logits) / student alone = 1.05 met (target <= 1.10)",
        "overhead jax: uncached KD (logits) / core Distiller (logits) = 1.10 **missed** (target <= 1.00)",
    ]
    # Interleaved rounds add the median of each round's ratio (here 1.20, 1.10, 1.15).
    for result, seconds in zip(results, ([1.0, 2.0, 2.0], [1.2, 2.2, 2.3], [2.2, 4.4, 4.4], [2.0, 4.0, 4.0])):
        result.update(interleaved=True, epoch_seconds=seconds)
    assert report.verdict_lines(results)[0] == (
        "overhead jax: cached KD (logits) / student alone = 1.05 met (target <= 1.10); paired rounds 1.15"
    )
    assert report.targets("overhead") is report.OVERHEAD_TARGETS
    assert report.targets("small") is report.TARGETS


def test_default_output_is_the_docs_benchmark_page_but_not_for_a_smoke_run():
    assert runner.parse_args([]).output == os.path.join("docs", "results", "benchmarks.md")
    assert runner.parse_args(["--smoke"]).output == os.path.join("saved_models", "smoke", "bench", "benchmarks.md")


# ------------------------------------------------------------- the GPU suite


def test_gpu_suite_plans_the_gpu_matrix():
    args = runner.parse_args(["--gpu-suite"])
    assert (args.output, args.json) == (runner.GPU_SUITE["output"], runner.GPU_SUITE["json"])
    specs = runner.plan(args)
    assert {spec["dtype_policy"] for spec in specs} == {"mixed_bfloat16"}
    assert all("configs" in spec and spec["group"] == "main" and spec["repeats"] == 3 for spec in specs)
    by_key = {(spec["backend"], spec["pair"]): spec for spec in specs}
    assert set(by_key) == {
        (backend, pair) for backend in ("torch", "jax") for pair in ("resnet", "small", "overhead")
    } | {("pytorch", "small"), ("pytorch", "overhead")}
    five = ["student", "teacher_inference", "kd_logits", "kd_cached", "core_logits"]
    assert all(by_key[backend, pair]["configs"] == five for backend, pair in by_key if backend != "pytorch")
    sizes = {pair: (by_key["jax", pair]["images"], by_key["jax", pair]["batch_size"]) for pair in PAIRS}
    assert sizes == {"resnet": (8192, 256), "small": (8192, 256), "overhead": (16384, 512)}
    # Options beside it override its choices.
    narrowed = runner.plan(
        runner.parse_args(["--gpu-suite", "--backend", "jax", "--pairs", "small", "--batch-size", "64"])
    )
    assert {(spec["backend"], spec["batch_size"]) for spec in narrowed} == {("jax", 64), ("pytorch", 64)}


def test_gpu_suite_without_a_gpu_says_how_to_run_it(tmp_path):
    if runner.machine_info()["accelerator"] is not None:
        pytest.skip("a GPU is here: the suite would run")
    with pytest.raises(SystemExit, match="--smoke"):
        runner.main(["--gpu-suite", "--output", str(tmp_path / "suite.md")])
    assert not (tmp_path / "suite.md").exists()


# A bare GPU image has neither TensorFlow nor keras-tuner (bench/gpu_setup.sh
# installs Keras, JAX and keras_kd without its dependencies): the suite must
# run without them.
_WITHOUT_TENSORFLOW = """
import runpy, sys

MISSING = {"tensorflow", "tensorflow_datasets", "keras_tuner", "mlxtend"}


class Hiding:
    # Finds nothing for the missing packages, as on an image without them.
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
sys.argv = ["bench"] + sys.argv[1:]
runpy.run_module("bench", run_name="__main__")
"""


@pytest.mark.slow
def test_gpu_suite_smoke_runs_without_tensorflow_or_keras_tuner(tmp_path):
    if REQUESTED_BACKEND == "tensorflow":
        pytest.skip("the GPU suite times torch and JAX only")
    output, results = tmp_path / "suite.md", tmp_path / "suite.json"
    environment = dict(os.environ, KERAS_BACKEND=REQUESTED_BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_TENSORFLOW,
            "--gpu-suite",
            "--smoke",
            "--output",
            str(output),
            "--json",
            str(results),
        ],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    data = json.loads(results.read_text())
    assert [r for r in data["results"] if "error" in r] == []
    timed = {(r["pair"], r["config"]) for r in data["results"]}
    five = ("student", "teacher_inference", "kd_logits", "kd_cached", "core_logits")
    assert timed == {(pair, config) for pair in PAIRS for config in five} | {
        ("small", "torch_logits"),
        ("overhead", "torch_logits"),
    }
    assert {r["dtype_policy"] for r in data["results"]} == {"mixed_bfloat16"}
    text = output.read_text()
    assert PAIRS["overhead"].title in text and PAIRS["resnet"].title in text
    for name, _, _, _ in report.OVERHEAD_TARGETS:
        assert name in text
    assert "overhead " + REQUESTED_BACKEND + ": cached KD (logits) / student alone" in completed.stdout


# ------------------------------------------------------------ demo gain sweep


def test_demo_gain_sweep_reports_each_setting():
    from bench import demo_gain_sweep

    lines = []
    demo_gain_sweep.main(
        [
            "--seeds",
            "0",
            "--teacher-epochs",
            "1",
            '{"epochs": 1, "shifted_copies": 0}',
            '{"epochs": 1, "shifted_copies": 0, "alpha": [0.9, 0.1], "temperature": 2}',
        ],
        print_fn=lines.append,
    )
    assert lines[0].startswith(f"{REQUESTED_BACKEND}: teacher ")
    assert len(lines) == 3
    assert lines[2].startswith(
        '{"epochs": 1, "shifted_copies": 0, "alpha": [0.9, 0.1], "temperature": 2}: labels only '
    )
    assert "gain " in lines[1] and "per seed " in lines[1]


@pytest.mark.parametrize("setting", ['{"alfa": 0.5}', "not json", "[1, 2]"])
def test_demo_gain_sweep_refuses_bad_settings(setting, capsys):
    from bench import demo_gain_sweep

    with pytest.raises(SystemExit):
        demo_gain_sweep.parse_args([setting])
    assert setting in capsys.readouterr().err


@pytest.mark.slow
def test_view_cache_bench_smoke_times_every_method(tmp_path):
    from bench import view_cache

    report = view_cache.main(["--smoke", "--json", str(tmp_path / "views.json")])
    methods = [row["method"] for row in report["rows"]]
    assert methods == ["student alone", "function matching, uncached", "view-cached, K=2", "view-cached, K=3"]
    for row in report["rows"]:
        assert len(row["accuracies"]) == 1 and 0.0 <= row["accuracy_mean"] <= 100.0
        assert row["median_epoch_seconds"] > 0 and row["ratio_to_student"] > 0
    assert report["rows"][0]["ratio_to_student"] == 1.0
    assert report["view_bytes"] == {2: 160 * 2 * 28 * 28 * 4, 3: 160 * 3 * 28 * 28 * 4}
    assert json.loads((tmp_path / "views.json").read_text())["backend"] == REQUESTED_BACKEND


# ------------------------------------------------------------- top-k cache


@pytest.mark.slow
def test_topk_cache_smoke_reports_sizes_and_students(tmp_path):
    from bench import topk_cache

    lines, results = [], tmp_path / "topk.json"
    assert topk_cache.main(["--smoke", "--json", str(results)], print_fn=lines.append) == 0
    data = json.loads(results.read_text())
    dense, top_8 = data["sizes"]
    # Per position: 1,000 float32 logits; or 8 float32 logits, 8 int16 ids and a float32 tail logit.
    assert (dense["bytes_per_position"], top_8["bytes_per_position"]) == (4000, 8 * (4 + 2) + 4)
    assert {r["arm"] for r in data["results"]} == {"labels only", "dense", "top-8", "top-8 renormalized"}
    assert all(0 <= r["agreement"] <= 1 and r["kl_teacher_student"] >= 0 for r in data["results"])
    assert lines[0].startswith(f"{REQUESTED_BACKEND}: python -m bench.topk_cache --smoke")


@pytest.mark.parametrize("arguments", [["--epochs", "0"], ["--top-k", "0"]])
def test_topk_cache_refuses_bad_arguments(arguments, capsys):
    from bench import topk_cache

    with pytest.raises(SystemExit):
        topk_cache.parse_args(arguments)
    assert arguments[0] in capsys.readouterr().err


# ------------------------------------------------------------- on-policy step


@pytest.mark.slow
def test_on_policy_smoke_times_the_step_and_its_parts_and_the_page_shows_them(tmp_path):
    from bench import on_policy

    lines, path = [], tmp_path / "on_policy.json"
    results = on_policy.main(["--smoke", "--json", str(path)], print_fn=lines.append)
    assert json.loads(path.read_text()) == json.loads(json.dumps(results))
    (timing,) = results["timing"]
    assert timing["backend"] == REQUESTED_BACKEND
    assert set(timing["median_seconds"]) == set(on_policy.PARTS)
    assert all(len(seconds) == 2 and min(seconds) > 0 for seconds in timing["seconds"].values())
    assert timing["ratio"] == pytest.approx(
        timing["median_seconds"]["on_policy"]
        / (timing["median_seconds"]["sampling"] + timing["median_seconds"]["off_policy"])
    )
    # Traced once, then never again where the step is compiled; run at every step where it is eager.
    first, later = timing["counts_first_round"], timing["counts_later_rounds"]
    assert first["step_python_runs"] >= 1
    assert later["step_python_runs"] == (2 if REQUESTED_BACKEND == "torch" else 0)
    if REQUESTED_BACKEND == "jax":
        assert first["jax_compilations"] > 0 and later["jax_compilations"] == later["jax_traces"] == 0
    if REQUESTED_BACKEND == "tensorflow":
        assert first["generate_traces"] == 1 and later["generate_traces"] == 0
    (memory,) = results["memory"]
    assert memory["logits_bytes"] == 4 * 2 * 12 * 64 and set(memory["ratio"]) == {"off_policy", "on_policy"}
    assert not on_policy.failed(results)
    # The page's section, as `python -m bench` writes it.
    run_info = {
        "command": "python -m bench",
        "started": "2026-01-01 00:00 UTC",
        "wall_seconds": 1.0,
        "load_start": (0.0, 0.0, 0.0),
        "load_end": (0.0, 0.0, 0.0),
        "machine": runner.machine_info(),
        "smoke": True,
        "warmup_steps": 1,
    }
    page = report.render(run_info, [], on_policy=results)
    assert f"## {on_policy.TITLE}" in page and "python -m bench.on_policy --smoke" in page
    for label in on_policy.PARTS.values():
        assert f"| {label} | " in page
    assert "| on-policy step / (sampling + off-policy step)" in page and "| on-policy training step | " in page
    assert "\n".join(lines).startswith(f"## {on_policy.TITLE}")
    failed = report.render(run_info, [], on_policy={"error": "boom"})
    assert "`python -m bench.on_policy` failed: `boom`" in failed


def test_on_policy_runs_with_full_cpu_runs_only(capsys):
    assert runner.runs_on_policy(runner.parse_args([]))
    for arguments in (["--no-on-policy"], ["--smoke"], ["--gpu-suite"]):
        assert not runner.runs_on_policy(runner.parse_args(arguments))
    from bench import on_policy

    with pytest.raises(SystemExit):
        on_policy.parse_args(["--rounds", "0"])
    assert "--rounds" in capsys.readouterr().err
    assert on_policy.failed({"timing": [{"backend": "jax", "error": "boom"}], "memory": [], "loss_memory": []})
