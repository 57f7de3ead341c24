"""Faults, determinism and safe loading of the Distiller on the current backend."""

import os
import signal
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import keras_kd
from conftest import REQUESTED_BACKEND, make_data, make_mlp


def make_distiller(**kwargs):
    teacher = make_mlp(32, name="teacher", dropout=0.2)
    student = make_mlp(8, name="student", dropout=0.2)
    return keras_kd.Distiller(teacher, student, **kwargs)


def test_the_same_seed_gives_the_same_history():
    x, y = make_data()
    histories = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        distiller = make_distiller(temperature=2.0).compile(optimizer="adam", metrics=["accuracy"])
        histories.append(distiller.fit(x, y, batch_size=16, epochs=3, verbose=0).history)
    assert histories[0] == histories[1]


def test_a_lambda_layer_is_refused_when_loading_by_default(tmp_path):
    teacher = make_mlp(16, name="teacher")
    inputs = keras.Input((8,))
    student = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Lambda(lambda t: t * 2.0)(inputs)))
    distiller = keras_kd.Distiller(teacher, student).compile(optimizer="adam")
    distiller.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)lambda.*safe_mode"):
        keras.saving.load_model(tmp_path / "lambda.keras")


def test_a_plain_python_schedule_is_refused_at_save_and_the_old_file_survives(tmp_path):
    path = tmp_path / "distiller.keras"
    make_distiller().compile(optimizer="adam").save(path)
    good_bytes = path.read_bytes()
    with pytest.raises(ValueError, match="plain Python callable.*register_keras_serializable"):
        make_distiller(temperature=lambda step: 4.0).compile(optimizer="adam").save(path)
    assert path.read_bytes() == good_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["distiller.keras"]  # no temporary left
    keras.saving.load_model(path)


def test_a_corrupted_keras_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "distiller.keras"
    make_distiller().compile(optimizer="adam").save(path)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises((ValueError, zipfile.BadZipFile, OSError)):
        keras.saving.load_model(path)


def test_a_nan_loss_stops_training_and_keeps_the_good_checkpoint(tmp_path):
    x, y = make_data(rows=64)
    # NaN sample weights of the second batch poison its loss on every backend
    # (NaN *inputs* do not: TensorFlow's fused MatMul+ReLU kernels map them to 0).
    poisoned_weights = np.ones(len(x), "float32")
    poisoned_weights[32:] = np.nan
    distiller = make_distiller().compile(optimizer="adam")
    checkpoint = tmp_path / "best.keras"
    callbacks = [
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="loss", save_best_only=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    distiller.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    good = checkpoint.read_bytes()
    history = distiller.fit(
        x, y, sample_weight=poisoned_weights, batch_size=32, epochs=5, shuffle=False, verbose=0, callbacks=callbacks
    )
    assert distiller.stop_training
    assert len(history.history.get("loss", [])) <= 1
    assert checkpoint.read_bytes() == good
    restored = keras.saving.load_model(checkpoint)
    assert np.all(np.isfinite(restored.predict(x, verbose=0)))


FAULT_SCRIPT = r"""
import os, signal, sys, json
import torch, keras, numpy as np
import keras_kd
sys.path.insert(0, {tests!r})
from conftest import make_mlp, make_data

kill_at = int(sys.argv[1])


def train(backup_dir, output):
    keras.utils.set_random_seed(3)
    teacher = make_mlp(32, name="teacher", dropout=0.2)
    # An explicit seed: on torch, unseeded Dropout draws from torch's global RNG,
    # which no Keras checkpoint stores (see README, "Determinism").
    student = make_mlp(8, name="student", dropout=0.2, dropout_seed=11)
    schedule = keras.optimizers.schedules.PolynomialDecay(5.0, 12, end_learning_rate=1.0)
    distiller = keras_kd.Distiller(teacher, student, temperature=schedule, alpha=0.8)
    distiller.compile(optimizer="adam")
    x, y = make_data(rows=64)

    class KillMidEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if kill_at >= 0 and self.model.optimizer.iterations.numpy() == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    distiller.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup_dir), KillMidEpoch()])
    np.savez(output, *distiller.student.get_weights())


for backup_dir, output in zip(sys.argv[2::2], sys.argv[3::2]):
    train(backup_dir, output)
"""


def run_fault_script(tmp_path, kill_at, *names):
    """Trains one run per name, in turn, in one new process; returns (its result, the student files)."""
    script = tmp_path / "fault.py"
    script.write_text(FAULT_SCRIPT.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, KERAS_BACKEND=REQUESTED_BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    outputs = [tmp_path / f"{name}.npz" for name in names]
    runs = [str(path) for name, output in zip(names, outputs) for path in (tmp_path / f"{name}_backup", output)]
    result = subprocess.run(
        [sys.executable, str(script), str(kill_at), *runs],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, outputs


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_student(tmp_path):
    # 4 steps per epoch: step 10 is in the middle of the third epoch.
    killed, (resumed_path,) = run_fault_script(tmp_path, 10, "resumed")
    assert killed.returncode == -signal.SIGKILL
    assert not resumed_path.exists()
    # A new process resumes the killed run, then trains the uninterrupted
    # reference from scratch (seeded again, its own backup directory).
    resumed, (resumed_path, reference_path) = run_fault_script(tmp_path, -1, "resumed", "reference")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, actual = np.load(reference_path), np.load(resumed_path)
    for key in expected.files:
        # Bit-exact on CPU for all three backends: same data order (no
        # shuffle); optimizer state and the Distiller's seed-generator states
        # (which Keras itself does not checkpoint) are restored.
        np.testing.assert_array_equal(actual[key], expected[key])
