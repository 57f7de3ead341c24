"""Width pruning by activation importance (keras_kd.pruning): tiny Llama 3 models and MLPs, NumPy references."""

import types

import keras
import numpy as np
import pytest

import hub_support
from keras_kd import pruning
from keras_kd.backend import _keras_hub_compat

keras_hub = pytest.importorskip("keras_hub")

VOCAB, HIDDEN, INTERMEDIATE, LAYERS = 64, 16, 32, 2
FEEDFORWARD = "transformer_layer_{}/feedforward_{}_dense/kernel"


def randomized(model, seed=0, scale=0.3):
    """`model` with every weight drawn anew from N(0, scale²): activations far from zero, units far apart."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(scale=scale, size=weight.shape).astype("float32"))
    return model


def llama(name="teacher", seed=0):
    return randomized(hub_support.llama3_lm(LAYERS, HIDDEN, name, VOCAB), seed)


def token_batch(seed=0, batch=4, length=8, valid_lengths=(8, 5, 3, 6)):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, VOCAB, (batch, length)).astype("int32")
    padding_mask = (np.arange(length)[None, :] < np.array(valid_lengths)[:, None]).astype("int32")
    return {"token_ids": token_ids * padding_mask, "padding_mask": padding_mask}


def weights_by_path(model):
    return {weight.path: keras.ops.convert_to_numpy(weight) for weight in model.weights}


def top_units(scores, width):
    return np.sort(np.argsort(-scores, kind="stable")[:width])


# ---------------------------------------------------------------- the private KerasHub attributes


def test_the_private_keras_hub_attributes_exist():
    backbone = hub_support.llama3_lm(LAYERS, HIDDEN, "teacher", VOCAB).backbone
    for layer in backbone.transformer_layers:
        for attribute in _keras_hub_compat.LLAMA_FEEDFORWARD_ATTRIBUTES.values():
            assert isinstance(getattr(layer, attribute, None), keras.layers.Dense), (
                f"keras-hub {keras_hub.__version__} has no Dense {attribute} on {type(layer).__name__}: "
                f"update keras_kd/backend/_keras_hub_compat.py (checked on {_keras_hub_compat.KERAS_HUB_CHECKED})"
            )
    feedforwards = _keras_hub_compat.llama_feedforwards(backbone)
    assert list(feedforwards) == [f"transformer_layer_{index}" for index in range(LAYERS)]
    for feedforward in feedforwards.values():
        assert tuple(feedforward.gate.kernel.shape) == (HIDDEN, INTERMEDIATE)
        assert tuple(feedforward.intermediate.kernel.shape) == (HIDDEN, INTERMEDIATE)
        assert tuple(feedforward.output.kernel.shape) == (INTERMEDIATE, HIDDEN)


def test_a_renamed_keras_hub_attribute_fails_loudly_naming_it():
    layer = types.SimpleNamespace(name="transformer_layer_0", _feedforward_gate_dense=None)
    with pytest.raises(RuntimeError, match="_feedforward_intermediate_dense.*keras-hub"):
        _keras_hub_compat.llama_feedforwards(types.SimpleNamespace(transformer_layers=[layer]))


# ---------------------------------------------------------------- Llama 3


def test_the_pruned_llama_computes_the_teacher_with_the_dropped_units_zeroed():
    teacher, tokens, width = llama(), token_batch(), 12
    before = weights_by_path(teacher)
    scores = pruning.width_importance(teacher, tokens)
    student = pruning.prune_width(teacher, tokens, intermediate_dim=width)

    assert type(student) is type(teacher) and student.backbone.intermediate_dim == width
    assert all(np.array_equal(value, weights_by_path(teacher)[path]) for path, value in before.items())
    zeroed = llama("zeroed")
    zeroed.set_weights(teacher.get_weights())
    for index in range(LAYERS):
        kept = top_units(scores[f"transformer_layer_{index}"], width)
        assert not np.array_equal(kept, np.arange(width))  # the ranking matters in this test
        output_kernel = next(w for w in zeroed.weights if w.path == FEEDFORWARD.format(index, "output"))
        rows = keras.ops.convert_to_numpy(output_kernel)
        rows[np.setdiff1d(np.arange(INTERMEDIATE), kept)] = 0.0
        output_kernel.assign(rows)

    held_out = token_batch(seed=1)
    expected = keras.ops.convert_to_numpy(zeroed(held_out))
    logits = keras.ops.convert_to_numpy(student(held_out))
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    teacher_logits = keras.ops.convert_to_numpy(teacher(held_out))
    assert np.abs(logits - teacher_logits).max() > 1e-2 * np.abs(teacher_logits).max()


def numpy_feedforward_importance(weights, tokens, epsilon, layer=0):
    """Minitron's score for layer 0 when its attention adds nothing: the FFN's input is the normed embedding."""
    embedded = weights["token_embedding/embeddings"][tokens["token_ids"]]
    normed = embedded / np.sqrt(np.mean(embedded**2, axis=-1, keepdims=True) + epsilon)
    normed = normed * weights[f"transformer_layer_{layer}/feedforward_layernorm/scale"]
    gate = normed @ weights[FEEDFORWARD.format(layer, "gate")]
    activations = gate / (1.0 + np.exp(-gate)) * (normed @ weights[FEEDFORWARD.format(layer, "intermediate")])
    mask = tokens["padding_mask"][..., None].astype("float64")
    per_example = (np.abs(activations) * mask).sum(axis=1) / mask.sum(axis=1)
    return np.sqrt((per_example**2).sum(axis=0))


def test_the_kept_units_are_the_top_scores_of_an_independent_numpy_computation():
    teacher, tokens, width = llama(), token_batch(), 10
    attention_output = next(
        w for w in teacher.weights if w.path == "transformer_layer_0/self_attention/attention_output/kernel"
    )
    attention_output.assign(np.zeros(attention_output.shape, "float32"))
    weights = weights_by_path(teacher)
    expected = numpy_feedforward_importance(weights, tokens, teacher.backbone.layer_norm_epsilon)

    scores = pruning.width_importance(teacher, tokens, layer_names=["transformer_layer_0"])
    assert list(scores) == ["transformer_layer_0"] and scores["transformer_layer_0"].shape == (INTERMEDIATE,)
    np.testing.assert_allclose(scores["transformer_layer_0"], expected, rtol=1e-4)
    student = pruning.prune_width(teacher, tokens, intermediate_dim=width)
    kept = top_units(expected, width)
    pruned = weights_by_path(student)
    for role in ("gate", "intermediate"):
        np.testing.assert_array_equal(
            pruned[FEEDFORWARD.format(0, role)], weights[FEEDFORWARD.format(0, role)][:, kept]
        )
    np.testing.assert_array_equal(
        pruned[FEEDFORWARD.format(0, "output")], weights[FEEDFORWARD.format(0, "output")][kept]
    )


def test_padded_positions_do_not_change_the_scores():
    teacher = llama()
    tokens = token_batch(valid_lengths=(8, 8, 8, 8))
    rng = np.random.default_rng(5)
    padded = {
        "token_ids": np.concatenate([tokens["token_ids"], rng.integers(1, VOCAB, (4, 5)).astype("int32")], axis=1),
        "padding_mask": np.concatenate([tokens["padding_mask"], np.zeros((4, 5), "int32")], axis=1),
    }
    scores = pruning.width_importance(teacher, tokens)
    padded_scores = pruning.width_importance(teacher, padded)
    counted = pruning.width_importance(teacher, {"token_ids": padded["token_ids"]})  # no mask: all count
    for name, value in scores.items():
        np.testing.assert_allclose(padded_scores[name], value, rtol=1e-5)
        assert not np.allclose(counted[name], value, rtol=1e-3)


def test_a_backbone_prunes_to_a_backbone_of_its_class():
    teacher = llama().backbone
    student = pruning.prune_width(teacher, token_batch(), intermediate_dim=20)
    assert type(student) is type(teacher) and student.intermediate_dim == 20
    assert [layer.intermediate_dim for layer in student.transformer_layers] == [20] * LAYERS


# ---------------------------------------------------------------- Keras MLPs


def mlp(sequential=False):
    layers = [
        keras.layers.Dense(10, activation="relu", name="hidden"),
        keras.layers.Dropout(0.5, name="dropout"),
        keras.layers.Dense(8, name="hidden2"),
        keras.layers.Activation("tanh", name="tanh"),
        keras.layers.Dense(3, name="logits"),
    ]
    if sequential:
        return randomized(keras.Sequential([keras.Input((6,)), *layers], name="mlp"), scale=0.6)
    outputs = inputs = keras.Input((6,))
    for layer in layers:
        outputs = layer(outputs)
    return randomized(keras.Model(inputs, outputs, name="mlp"), scale=0.6)


def numpy_mlp(weights, x, kept_hidden, kept_hidden2, prefix):
    """The MLP's logits keeping some units of "hidden" and "hidden2", from the teacher's weights."""
    w = {path.removeprefix(prefix): value for path, value in weights.items()}
    hidden = np.maximum(x @ w["hidden/kernel"][:, kept_hidden] + w["hidden/bias"][kept_hidden], 0.0)
    hidden2 = np.tanh(hidden @ w["hidden2/kernel"][kept_hidden][:, kept_hidden2] + w["hidden2/bias"][kept_hidden2])
    return hidden2 @ w["logits/kernel"][kept_hidden2] + w["logits/bias"]


@pytest.mark.parametrize("sequential", [False, True], ids=["functional", "sequential"])
def test_a_pruned_mlp_matches_a_numpy_reference(sequential):
    teacher = mlp(sequential)
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    weights = weights_by_path(teacher)
    prefix = "mlp/" if sequential else ""
    every_unit = numpy_mlp(weights, x, np.arange(10), np.arange(8), prefix)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(teacher(x)), every_unit, rtol=1e-5, atol=1e-5)
    # The scores: L2 over the batch of |activation| read at the next Dense's input.
    hidden = np.maximum(x @ weights[prefix + "hidden/kernel"] + weights[prefix + "hidden/bias"], 0.0)
    hidden2 = np.tanh(hidden @ weights[prefix + "hidden2/kernel"] + weights[prefix + "hidden2/bias"])
    expected_scores = {"hidden": np.sqrt((hidden**2).sum(0)), "hidden2": np.sqrt((hidden2**2).sum(0))}

    scores = pruning.width_importance(teacher, x)
    assert sorted(scores) == ["hidden", "hidden2"]
    for name, value in expected_scores.items():
        np.testing.assert_allclose(scores[name], value, rtol=1e-5)
        one_layer = pruning.width_importance(teacher, x, layer_names=[name])
        assert list(one_layer) == [name]
        np.testing.assert_allclose(one_layer[name], value, rtol=1e-5)
    student = pruning.prune_width(teacher, x, units={"hidden": 4, "hidden2": 5})

    assert type(student) is type(teacher)
    assert (student.get_layer("hidden").units, student.get_layer("hidden2").units) == (4, 5)
    expected = numpy_mlp(
        weights, x, top_units(expected_scores["hidden"], 4), top_units(expected_scores["hidden2"], 5), prefix
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(student(x)), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(expected, every_unit, atol=1e-3)


# ---------------------------------------------------------------- bad inputs


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def with_batchnorm():
    inputs = keras.Input((6,))
    hidden = keras.layers.BatchNormalization(name="norm")(keras.layers.Dense(10, name="hidden")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


X = np.zeros((4, 6), "float32")


@pytest.mark.parametrize(
    ("make_model", "data", "kwargs", "error", "match"),
    [
        ("llama", "tokens", {"intermediate_dim": INTERMEDIATE}, ValueError, r"intermediate_dim=32 .*\[1, 31\]"),
        ("llama", "tokens", {"intermediate_dim": 0}, ValueError, r"intermediate_dim=0 .*\[1, 31\]"),
        ("llama", "tokens", {"intermediate_dim": 8.0}, ValueError, r"intermediate_dim=8.0 .*integer"),
        ("llama", "tokens", {}, ValueError, r"intermediate_dim=.*\[1, 31\]"),
        ("llama", "tokens", {"units": {"hidden": 2}}, ValueError, "units= is for Keras.*intermediate_dim="),
        ("llama", X, {"intermediate_dim": 8}, TypeError, "'token_ids'.*got a ndarray of shape \\(4, 6\\)"),
        ("llama", {"token_ids": X}, {"intermediate_dim": 8}, ValueError, "integer array.*float32"),
        (
            "llama",
            {"token_ids": np.ones((2, 4), "int32"), "padding_mask": np.ones((2, 3))},
            {"intermediate_dim": 8},
            ValueError,
            r"'padding_mask'.*\(2, 3\)",
        ),
        (
            "llama",
            {"token_ids": np.ones((2, 4), "int32"), "labels": X},
            {"intermediate_dim": 8},
            ValueError,
            "'labels'",
        ),
        ("qwen", "tokens", {"intermediate_dim": 8}, TypeError, "Qwen3CausalLM.*LlamaBackbone"),
        ("subclassed", X, {"units": {"dense": 2}}, TypeError, "Subclassed.*Sequential and functional"),
        ("mlp", X, {"units": {"hidden": 10}}, ValueError, r"units\['hidden'\]=10 .*\[1, 9\]"),
        ("mlp", X, {"units": {"logits": 2}}, ValueError, "'logits' goes to .*model output"),
        ("mlp", X, {"units": {"nope": 2}}, ValueError, "'nope' is not a Dense layer.*'hidden'"),
        ("mlp", X, {"intermediate_dim": 2}, ValueError, "intermediate_dim= is for KerasHub.*units="),
        ("mlp", X, {}, ValueError, r"prunable ones: \['hidden', 'hidden2'\]"),
        ("mlp", (row for row in X), {"units": {"hidden": 2}}, TypeError, "not a dataset or a generator.*generator"),
        ("batchnorm", X, {"units": {"hidden": 2}}, ValueError, "'norm' \\(BatchNormalization\\)"),
        ("unbuilt", X, {"units": {"hidden": 2}}, ValueError, "Sequential 'unbuilt' is not built.*keras.Input"),
    ],
)
def test_bad_inputs_are_refused_with_what_would_be_valid(make_model, data, kwargs, error, match):
    builders = {
        "llama": lambda: hub_support.llama3_lm(LAYERS, HIDDEN, "teacher", VOCAB),
        "qwen": lambda: hub_support.qwen3_lm(1, HIDDEN, "teacher", VOCAB),
        "subclassed": Subclassed,
        "mlp": mlp,
        "batchnorm": with_batchnorm,
        "unbuilt": lambda: keras.Sequential(
            [keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2)], name="unbuilt"
        ),
    }
    with pytest.raises(error, match=match):
        pruning.prune_width(builders[make_model](), token_batch() if isinstance(data, str) else data, **kwargs)
