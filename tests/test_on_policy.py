"""On-policy distillation of KerasHub causal LMs (tiny Llama 3 models built from configs, nothing downloaded)."""

import keras
import numpy as np
import pytest

import hub_support
import keras_kd
from keras_kd import sampling

keras_hub = pytest.importorskip("keras_hub")

VOCAB, LENGTH, END = 32, 12, 2
PROMPT_LENGTHS, RESPONSE_LENGTHS = np.array([3, 4, 5, 3]), np.array([4, 3, 5, 6])


def causal_lm(num_layers, hidden_dim, name, vocabulary_size=VOCAB):
    return hub_support.llama3_lm(num_layers, hidden_dim, name, vocabulary_size)


def prompt_response_batch(seed=0, prompt_lengths=PROMPT_LENGTHS, response_lengths=RESPONSE_LENGTHS):
    """`(x, y, sample_weight)` in KerasHub's Gemma 3 layout: prompt, response, right padding."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCAB, (len(prompt_lengths), LENGTH + 1)).astype("int32")
    positions = np.arange(LENGTH + 1)[None, :]
    ends = (prompt_lengths + response_lengths)[:, None]
    tokens = tokens * (positions < ends)
    response = (positions >= prompt_lengths[:, None]) & (positions < ends)
    x = {"token_ids": tokens[:, :LENGTH], "padding_mask": (positions < ends)[:, :LENGTH].astype("int32")}
    return x, tokens[:, 1:], response[:, 1:].astype("float32")


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    teacher, student = causal_lm(2, 32, "teacher"), causal_lm(1, 16, "student")
    return teacher, student, student.get_weights()


def distiller_of(models, distiller_class=None, **kwargs):
    """A new distiller of the module's models, the student back at its initial weights."""
    teacher, student, initial = models
    student.set_weights(initial)
    distiller_class = distiller_class or keras_kd.OnPolicyDistiller
    kwargs.setdefault("seed", 1)
    if distiller_class is keras_kd.Distiller:
        kwargs.pop("seed")
    distiller = distiller_class(teacher, student, **kwargs)
    return distiller.compile(optimizer=keras.optimizers.Adam(1e-2))


def one_step_logs(distiller, batch, initial_weights=None):
    """The logs of one training step on `batch`; with `initial_weights`, from those student weights at step 0."""
    if initial_weights is not None:
        distiller.student.set_weights(initial_weights)
        if distiller.optimizer.built:
            distiller.optimizer.iterations.assign(0)
    x, y, sample_weight = batch
    return distiller.train_on_batch(x, y, sample_weight=sample_weight, return_dict=True)


def numpy(*values):
    return [keras.ops.convert_to_numpy(value) for value in values]


def test_a_sampled_batch_keeps_the_prompts_and_weighs_exactly_the_sampled_tokens(models):
    _, student, _ = models
    x, y, sample_weight = prompt_response_batch()
    sampler = sampling.bounded_sampler(sampling.get_sampler("greedy"))
    # Every id but the padding one ends a response: each row samples one token.
    sampled_x, sampled_y, weight = sampling.sampled_batch(student, sampler, x, y, sample_weight, 3, range(1, VOCAB))
    token_ids, mask, sampled_y, weight = numpy(sampled_x["token_ids"], sampled_x["padding_mask"], sampled_y, weight)
    for row, prompt_length in enumerate(PROMPT_LENGTHS):
        np.testing.assert_array_equal(token_ids[row, :prompt_length], x["token_ids"][row, :prompt_length])
        assert token_ids[row, prompt_length] != 0  # the one sampled token, a stop token
        assert (token_ids[row, prompt_length + 1 :] == 0).all()
        np.testing.assert_array_equal(mask[row], np.arange(LENGTH) <= prompt_length)
        np.testing.assert_array_equal(weight[row], np.arange(LENGTH) == prompt_length - 1)
    np.testing.assert_array_equal(sampled_y[:, :-1], token_ids[:, 1:])
    assert (token_ids.dtype, mask.dtype, weight.dtype) == (np.int32, np.int32, np.float32)

    # Without stop tokens a row samples max_new_tokens, within the sequence.
    for max_new_tokens, expected in ((3, [3, 3, 3, 3]), (LENGTH, LENGTH - PROMPT_LENGTHS)):
        _, _, weight = sampling.sampled_batch(student, sampler, x, y, sample_weight, max_new_tokens, None)
        np.testing.assert_array_equal(numpy(keras.ops.sum(weight, axis=1))[0], expected)


def test_with_lmbda_one_the_data_responses_do_not_count_but_the_prompts_do(models):
    initial = models[2]
    batch = x, y, sample_weight = prompt_response_batch()
    other_x, other_y, _ = prompt_response_batch(seed=5)
    # x[:, p] is the target y[:, p - 1]: the response tokens of x sit one place after the weighted targets.
    response_tokens = np.pad(sample_weight[:, :-1] > 0, ((0, 0), (1, 0)))
    other_tokens = np.where(response_tokens, other_x["token_ids"], x["token_ids"]).astype("int32")
    responses_changed = (
        {"token_ids": other_tokens, "padding_mask": x["padding_mask"]},
        np.where(sample_weight > 0, other_y, y),
        sample_weight,
    )
    assert not np.array_equal(other_tokens, x["token_ids"])
    prompts_changed = (other_x, other_y, sample_weight)

    on_policy = distiller_of(models, lmbda=1.0, max_new_tokens=4)
    logs, changed, moved = (
        one_step_logs(on_policy, data, initial) for data in (batch, responses_changed, prompts_changed)
    )
    assert changed["loss"] == pytest.approx(logs["loss"], rel=1e-6)
    assert abs(moved["loss"] - logs["loss"]) > 1e-6 * abs(logs["loss"])

    # The test can fail: off-policy, the data's responses are what counts.
    off_policy = distiller_of(models, lmbda=0.0)
    logs, changed = (one_step_logs(off_policy, data, initial) for data in (batch, responses_changed))
    assert abs(changed["loss"] - logs["loss"]) > 1e-6 * abs(logs["loss"])


def test_lmbda_zero_is_the_off_policy_distiller(models):
    batch = prompt_response_batch()
    settings = dict(temperature=2.0, alpha=0.5, distillation_loss=keras_kd.losses.GeneralizedJSD(beta=0.5))
    on_policy = distiller_of(models, lmbda=0.0, **settings)
    on_policy_logs = [one_step_logs(on_policy, batch) for _ in range(2)]
    student_weights = on_policy.student.get_weights()
    off_policy = distiller_of(models, keras_kd.Distiller, **settings)
    off_policy_logs = [one_step_logs(off_policy, batch) for _ in range(2)]
    for on, off in zip(on_policy_logs, off_policy_logs):
        for name in ("loss", "distillation_loss", "student_loss", "teacher_agreement"):
            assert on[name] == pytest.approx(off[name], rel=1e-5, abs=1e-7), name
    for on, off in zip(student_weights, off_policy.student.get_weights()):
        np.testing.assert_allclose(on, off, rtol=1e-5, atol=1e-6)


class StopAtStep(keras.callbacks.Callback):
    """Interrupts a fit after the given training step, as a crash would."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.step:
            raise KeyboardInterrupt(f"stopped after step {self.step}")


def test_a_resumed_run_draws_the_same_samples_and_the_distiller_saves(models, tmp_path):
    x, y, sample_weight = prompt_response_batch()

    def train(backup_dir, callbacks=(), seed=1):
        distiller = distiller_of(models, lmbda=0.5, max_new_tokens=4, seed=seed)
        distiller.fit(
            x,
            y,
            sample_weight=sample_weight,
            validation_data=(x, y, sample_weight),
            batch_size=2,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(backup_dir)), *callbacks],
        )
        return distiller

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", [StopAtStep(3)])  # in the middle of the second epoch
    # The distillers share the module's student: its weights are read before the next run.
    resumed = train(tmp_path / "resumed")
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 6
    resumed_weights = resumed.student.get_weights()
    other_seed_weights = train(tmp_path / "other_seed", seed=2).student.get_weights()
    reference = train(tmp_path / "reference")
    for actual, expected in zip(resumed_weights, reference.student.get_weights()):
        np.testing.assert_array_equal(actual, expected)
    # The test can fail: another seed samples other responses.
    assert any(not np.allclose(a, b) for a, b in zip(other_seed_weights, reference.student.get_weights()))

    path = tmp_path / "on_policy.keras"
    reference.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_kd.OnPolicyDistiller)
    assert (loaded.lmbda, loaded.max_new_tokens, loaded.seq_kd) == (0.5, 4, False)
    assert type(loaded.sampler) is type(reference.sampler)
    assert loaded.get_config()["seed"] == reference.get_config()["seed"]
    assert isinstance(loaded.distillation_loss, keras_kd.losses.ReverseKL)
    for actual, expected in zip(loaded.student.get_weights(), reference.student.get_weights()):
        np.testing.assert_array_equal(actual, expected)
    history = loaded.fit(x, y, sample_weight=sample_weight, batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()


@pytest.mark.parametrize(
    "settings, error, fragments",
    [
        (dict(lmbda=1.5), ValueError, ["lmbda=1.5", "[0, 1]"]),
        (dict(lmbda=-0.1), ValueError, ["lmbda=-0.1"]),
        (dict(lmbda="often"), TypeError, ["'often'"]),
        (dict(max_new_tokens=0), ValueError, ["max_new_tokens=0", "at least 1"]),
        (dict(sampler="beam"), ValueError, ["'beam'", "greedy"]),
        (dict(stop_token_ids=[0]), ValueError, ["[0]", "pads"]),
        (dict(mixup=0.2), ValueError, ["mixup=0.2"]),
    ],
)
def test_bad_settings_are_refused(models, settings, error, fragments):
    teacher, student, _ = models
    with pytest.raises(error) as raised:
        keras_kd.OnPolicyDistiller(teacher, student, **settings)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_models_that_cannot_sample_or_differ_in_vocabulary_are_refused(models):
    teacher, student, _ = models
    not_a_causal_lm = keras.Sequential([keras.Input((LENGTH,), dtype="int32"), keras.layers.Embedding(VOCAB, 4)])
    with pytest.raises(TypeError, match="the student is Sequential"):
        keras_kd.OnPolicyDistiller(teacher, not_a_causal_lm)
    with pytest.raises(ValueError, match=str(VOCAB + 8)):
        keras_kd.OnPolicyDistiller(teacher, causal_lm(1, 8, "wide_vocabulary", vocabulary_size=VOCAB + 8))


def test_batches_the_sampler_cannot_use_are_refused_before_training(models):
    x, y, sample_weight = prompt_response_batch()
    distiller = distiller_of(models, max_new_tokens=4)
    before = [weight.copy() for weight in distiller.student.get_weights()]
    with pytest.raises(ValueError, match="needs sample_weight marking the response tokens"):
        distiller.fit(x, y, epochs=1, verbose=0)
    no_response = sample_weight.copy()
    no_response[1] = 0.0
    with pytest.raises(ValueError, match="Row 1 of the batch has no response token"):
        distiller.fit(x, y, sample_weight=no_response, epochs=1, verbose=0)
    too_long = distiller_of(models, max_new_tokens=LENGTH)
    with pytest.raises(ValueError, match=f"max_new_tokens={LENGTH} does not fit sequences of {LENGTH} tokens"):
        too_long.fit(x, y, sample_weight=sample_weight, epochs=1, verbose=0)
    for weight, kept in zip(distiller.student.get_weights(), before):
        np.testing.assert_array_equal(weight, kept)
    with pytest.raises(ValueError, match="replaces the responses of training batches"):
        keras_kd.TeacherCache.for_distiller(distiller, x)


@pytest.mark.parametrize("family", [hub_support.gemma3_lm, hub_support.qwen3_lm], ids=["gemma3", "qwen3"])
def test_other_families_distil_on_policy_from_the_prompts_layout(family):
    prompts, responses = [[5, 6, 7], [8, 9], [10, 11, 12, 13]], [[20, 21], [22, 23, 24], [25]]
    x, y, sample_weight = keras_kd.prompts.layout(prompts, responses, LENGTH, start_token_id=1, end_token_id=END)
    teacher, student = family(2, 32, "teacher", VOCAB), family(1, 16, "student", VOCAB)
    distiller = keras_kd.OnPolicyDistiller(teacher, student, max_new_tokens=5, stop_token_ids=[END], seed=0)
    history = distiller.compile(optimizer="adam").fit(
        x, y, sample_weight=sample_weight, batch_size=3, epochs=2, verbose=0
    )
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][0] > 0
