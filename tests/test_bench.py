"""The benchmark harness: a smoke run end to end, the report, the PyTorch twins."""

import json

import pytest
from conftest import REQUESTED_BACKEND

import keras

from bench import report
from bench import runner
from bench import torch_loop
from bench import workload


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One `python -m bench --smoke` run on this backend, shared by the tests below.

    Ten configurations, each with its own Keras train step to build: about a
    minute of CPU on JAX (30-40 s on TensorFlow and torch), hence `slow`.
    """
    directory = tmp_path_factory.mktemp("bench")
    output, results = directory / "BENCHMARKS.md", directory / "results.json"
    status = runner.main(
        ["--smoke", "--backend", REQUESTED_BACKEND, "--output", str(output), "--json", str(results)]
    )
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
    assert "Load average" in text and "shared with other engineers" in text
    assert "No GPU" in text
    assert text.rstrip().endswith(report.ANALYSIS_MARKER)


@pytest.mark.slow
def test_rewriting_keeps_the_hand_written_analysis(smoke_run, tmp_path):
    _, output, data = smoke_run
    target = tmp_path / "BENCHMARKS.md"
    target.write_text(output.read_text() + "\n## Analysis\n\nProfiles by hand.\n")
    report.write(str(target), data["run"], data["results"])
    text = target.read_text()
    assert text.count(report.ANALYSIS_MARKER) == 1
    assert text.endswith("## Analysis\n\nProfiles by hand.\n")


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
    assert report._verdict(1.2, 1.10) == "1.20 **missed**"
    assert report._verdict(0.9, 1.0, at_least=True) == "0.90 **missed**"


@pytest.mark.parametrize(
    "arguments",
    [
        ["--repeats", "0"],
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
        ["--backend", "jax", "torch", "--pairs", "resnet", "--batch-size", "16", "--images", "40",
         "--dtype-policy", "mixed_bfloat16", "--no-scaling"]
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
    spec = {"pair": "small", "images": 8, "batch_size": 4, "repeats": 1, "warmup_steps": 1,
            "smoke": True, "dtype_policy": "mixed_bfloat16"}
    torch_result = workload.run(dict(spec, config="torch_logits"))
    assert torch_result["torch_device"] == "cpu" and torch_result["seconds"] > 0
    workload.run(dict(spec, config="teacher_inference"))
    assert keras.config.dtype_policy().name == "mixed_bfloat16"


def test_bad_spec_is_refused_with_the_valid_values():
    spec = {"pair": "small", "config": "kd_logits", "images": 10, "batch_size": 4, "repeats": 1, "warmup_steps": 1, "smoke": True}
    with pytest.raises(ValueError, match="multiple of batch_size"):
        workload.run(spec)
    with pytest.raises(ValueError, match="valid"):
        workload.run(dict(spec, config="distil"))


# ------------------------------------------------------------ demo gain sweep


def test_demo_gain_sweep_reports_each_setting():
    from bench import demo_gain_sweep

    lines = []
    demo_gain_sweep.main(
        ["--seeds", "0", "--teacher-epochs", "1", '{"epochs": 1, "shifted_copies": 0}',
         '{"epochs": 1, "shifted_copies": 0, "alpha": [0.9, 0.1], "temperature": 2}'],
        print_fn=lines.append,
    )
    assert lines[0].startswith(f"{REQUESTED_BACKEND}: teacher ")
    assert len(lines) == 3
    assert lines[2].startswith('{"epochs": 1, "shifted_copies": 0, "alpha": [0.9, 0.1], "temperature": 2}: labels only ')
    assert "gain " in lines[1] and "per seed " in lines[1]


@pytest.mark.parametrize("setting", ['{"alfa": 0.5}', "not json", "[1, 2]"])
def test_demo_gain_sweep_refuses_bad_settings(setting, capsys):
    from bench import demo_gain_sweep

    with pytest.raises(SystemExit):
        demo_gain_sweep.parse_args([setting])
    assert setting in capsys.readouterr().err
