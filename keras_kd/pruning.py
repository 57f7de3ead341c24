"""Width pruning by activation importance: a narrower student that starts from the teacher's weights.

Minitron (Muralidharan et al., 2024, "Compact Language Models via Pruning and
Knowledge Distillation") makes a student by removing the least important
units of a trained model, then distils the teacher into it. A unit's
importance is read from activations on a small calibration batch: for a
feedforward neuron, the absolute value of the activation that feeds the
feedforward's output projection, averaged over each sequence's positions and
then aggregated over the batch by an L2 norm (the aggregation the paper found
best for width; NVIDIA's Model Optimizer computes it so). Here the padded
positions (`padding_mask == 0`) are left out of the average; a sequence with
no valid position adds nothing.

The kept units keep their weights exactly: the pruned model computes what the
teacher computes with the dropped units' activations set to zero. The teacher
is not changed. Two kinds of models are supported:

- KerasHub Llama models (`keras_hub.models.LlamaBackbone`, `Llama3Backbone`,
  and tasks built on them such as `Llama3CausalLM`): `intermediate_dim=k`
  keeps the `k` most important feedforward neurons of every decoder layer,
  ranked in each layer, the same width in every layer (as Minitron does).
  The result is the same class, built from the teacher's config with the new
  `intermediate_dim`, and shares the teacher's preprocessor.
- Keras `Sequential` and functional models: `units={"dense name": k}` keeps
  the `k` most important units of each named `Dense` layer. Its output must
  reach exactly one `Dense` (directly, or through `Activation`, `Dropout`,
  `ReLU`, `LeakyReLU` or `ELU` layers, which act on each unit alone): that
  `Dense` loses the matching kernel rows. The importance is read at that
  `Dense`'s input. The result is a clone (`keras.models.clone_model`).

Attention heads are not pruned: KerasHub's Llama derives its head size from
`hidden_dim // num_query_heads`, so a Llama with fewer heads has larger
heads, not a subset of the teacher's.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_kd.backend import _keras_hub_compat

# Layers that may stand between a pruned Dense and the Dense reading its
# units: each output unit depends on the same input unit only.
ELEMENTWISE_LAYERS = (
    keras.layers.Activation,
    keras.layers.Dropout,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
)
# Activations that mix the units, so that dropping one changes the others.
UNIT_MIXING_ACTIVATIONS = ("softmax", "log_softmax")
TOKEN_KEYS = ("token_ids", "padding_mask")
SUPPORTED = (
    "KerasHub LlamaBackbone and Llama3Backbone (and their tasks, e.g. Llama3CausalLM) with "
    "intermediate_dim=, or Keras Sequential and functional models with units="
)


def width_importance(model, calibration_data, *, layer_names=None):
    """The importance of each unit, read from the activations on a calibration batch.

    Args:
        model: A KerasHub Llama backbone or task, or a Keras `Sequential` or
            functional model (see the module's docstring).
        calibration_data: For a KerasHub model, a dict of `"token_ids"` and
            optionally `"padding_mask"`, integer arrays of shape
            `(batch, sequence length)`, as KerasHub backbones take. For a
            Keras model, what the model takes: an array or tensor of
            examples, or a list or dict of them.
        layer_names: The layers to score: for a KerasHub model, names of
            decoder layers (`"transformer_layer_0"`, ...); for a Keras model,
            names of `Dense` layers that `prune_width` can prune. None: all of
            them.

    Returns:
        `{layer name: NumPy float32 array of one importance per unit}`: per
        feedforward neuron of each decoder layer, or per unit of each `Dense`.

    Raises:
        TypeError: `model` is of an unsupported kind, or `calibration_data`
            is not of the form the model takes.
        ValueError: a name in `layer_names` is not a layer that can be scored.
    """
    backbone = _llama_backbone(model)
    if backbone is not None:
        tokens = _token_batch(calibration_data, model)
        return _llama_importance(backbone, tokens, layer_names)
    graph = _KerasGraph(model)
    _check_examples(calibration_data)
    names = graph.prunable_dense_names() if layer_names is None else list(layer_names)
    return graph.importance(calibration_data, names)


def prune_width(model, calibration_data, *, intermediate_dim=None, units=None):
    """A narrower copy of `model` that keeps its most important units, with their weights.

    Scores the units with `width_importance` on `calibration_data`, keeps
    the highest-scoring ones (in their original order) and copies their
    weights exactly, by `Variable.path`. `model` is not changed; the new
    model is not compiled.

    Args:
        model: A KerasHub Llama backbone or task, or a Keras `Sequential` or
            functional model (see the module's docstring).
        calibration_data: A batch of the model's inputs, as for
            `width_importance`. A few hundred sequences of the training
            distribution are typical for a language model.
        intermediate_dim: For a KerasHub model: the feedforward width to
            keep in every decoder layer, in `[1, teacher's intermediate_dim)`.
        units: For a Keras model: `{Dense layer name: units to keep}`, each
            in `[1, the layer's units)`.

    Returns:
        A new model of the same class as `model`.

    Raises:
        TypeError: `model` is of an unsupported kind (the message lists the
            supported ones), or `calibration_data` is not of the form the
            model takes.
        ValueError: a width is missing, of the wrong kind for the model, or
            out of range (the message gives the valid range), or a named
            layer cannot be pruned (the message says why).

    Example:

    ```python
    import keras
    import numpy as np
    from keras_kd.pruning import prune_width

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    teacher = keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))
    calibration = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")

    student = prune_width(teacher, calibration, units={"hidden": 5})
    assert student.get_layer("hidden").units == 5
    assert student.get_layer("logits").kernel.shape == (5, 3)
    ```
    """
    backbone = _llama_backbone(model)
    if backbone is not None:
        if units is not None:
            raise ValueError(
                f"units= is for Keras Sequential and functional models; for a {type(model).__name__} "
                f"give intermediate_dim= (the feedforward width to keep), got units={units!r}."
            )
        if intermediate_dim is None:
            raise ValueError(
                f"Give intermediate_dim=, the feedforward width to keep, in [1, {backbone.intermediate_dim - 1}]."
            )
        _check_width("intermediate_dim", intermediate_dim, backbone.intermediate_dim)
        return _prune_llama(model, backbone, _token_batch(calibration_data, model), intermediate_dim)
    graph = _KerasGraph(model)
    if intermediate_dim is not None:
        raise ValueError(
            f"intermediate_dim= is for KerasHub Llama models; for a {type(model).__name__} give "
            f'units={{"dense layer name": units to keep, ...}}, got intermediate_dim={intermediate_dim!r}.'
        )
    if not isinstance(units, dict) or not units:
        raise ValueError(
            'Give units={"dense layer name": units to keep, ...} naming Dense layers of the model '
            f"(prunable ones: {graph.prunable_dense_names()}); got units={units!r}."
        )
    for name, width in units.items():
        _check_width(f"units[{name!r}]", width, graph.dense(name).units)
        graph.path_to_projection(name)
    _check_examples(calibration_data)
    return graph.pruned(calibration_data, units)


# ---------------------------------------------------------------- shared


def _check_width(what, width, current):
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not 0 < width < current:
        raise ValueError(
            f"{what}={width!r} is not a narrower width: give an integer in [1, {current - 1}] "
            f"(the teacher has {current})."
        )


def _per_example_magnitudes(activations, mask=None):
    """The mean |activation| of each unit over each example's valid positions: shape `(batch, units)`."""
    activations = ops.convert_to_tensor(activations)
    batch, units = ops.shape(activations)[0], ops.shape(activations)[-1]
    magnitudes = ops.reshape(ops.abs(ops.cast(activations, "float32")), (batch, -1, units))
    if mask is None:
        return ops.mean(magnitudes, axis=1)
    mask = ops.reshape(ops.cast(mask, "float32"), (batch, -1, 1))
    counts = ops.maximum(ops.sum(mask, axis=1), 1.0)
    return ops.sum(magnitudes * mask, axis=1) / counts


def _l2_over_batch(per_example):
    return ops.convert_to_numpy(ops.sqrt(ops.sum(ops.square(per_example), axis=0))).astype("float32")


def _kept_units(scores, width):
    """The indices of the `width` highest scores, in increasing order (ties: the earlier unit)."""
    return np.sort(np.argsort(-scores, kind="stable")[:width])


def _sliced_dense_values(dense, kept_inputs=None, kept_units=None):
    """`{variable path: value}` of a Dense's kernel (and bias) keeping some input rows and output columns."""
    expected = 2 if dense.use_bias else 1
    if len(dense.weights) != expected:
        raise ValueError(
            f"Dense {dense.name!r} has the weights {[weight.path for weight in dense.weights]}; only a plain "
            "float Dense (a kernel and maybe a bias; not quantized, no LoRA) can be pruned."
        )
    kernel = ops.convert_to_numpy(dense.kernel)
    if kept_inputs is not None:
        kernel = kernel[kept_inputs]
    values = {dense.kernel.path: kernel if kept_units is None else kernel[:, kept_units]}
    if dense.use_bias:
        bias = ops.convert_to_numpy(dense.bias)
        values[dense.bias.path] = bias if kept_units is None else bias[kept_units]
    return values


def _copy_weights(source, target, sliced):
    """Assigns each weight of `target` its value in `source` (by path), or its sliced value in `sliced`."""
    sources = {weight.path: weight for weight in source.weights}
    targets = {weight.path: weight for weight in target.weights}
    if sources.keys() != targets.keys() or len(targets) != len(target.weights):
        raise RuntimeError(
            f"The pruned {type(target).__name__}'s weights do not match the teacher's by path: "
            f"only the teacher has {sorted(sources.keys() - targets.keys())}, only the pruned model "
            f"{sorted(targets.keys() - sources.keys())}."
        )
    for path, weight in targets.items():
        value = sliced[path] if path in sliced else ops.convert_to_numpy(sources[path])
        if tuple(value.shape) != tuple(weight.shape):
            raise RuntimeError(f"{path}: the value to copy has shape {value.shape}, the weight {weight.shape}.")
        weight.assign(value)


def _describe(value):
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


# ---------------------------------------------------------------- KerasHub Llama


def _llama_backbone(model):
    """The model's Llama backbone; None for a Keras model; TypeError for anything else."""
    backbone = _keras_hub_compat.llama_backbone(model)
    if backbone is None and (_keras_hub_compat.is_keras_hub_model(model) or not isinstance(model, keras.Model)):
        raise TypeError(f"Cannot prune the width of a {type(model).__name__}: supported are {SUPPORTED}.")
    return backbone


def _token_batch(calibration_data, model):
    """`calibration_data` checked and completed: `{"token_ids", "padding_mask"}` as int32 NumPy arrays."""
    if not isinstance(calibration_data, dict) or "token_ids" not in calibration_data:
        raise TypeError(
            f"calibration_data for a {type(model).__name__} must be a dict of 'token_ids' and optionally "
            "'padding_mask', integer arrays of shape (batch, sequence length), as KerasHub backbones take "
            f"(tokenize text with the model's preprocessor first); got {_describe(calibration_data)}."
        )
    unknown = sorted(set(calibration_data) - set(TOKEN_KEYS))
    if unknown:
        raise ValueError(f"calibration_data has the keys {unknown}; it takes only {list(TOKEN_KEYS)}.")
    token_ids = np.asarray(ops.convert_to_numpy(calibration_data["token_ids"]))
    if token_ids.ndim != 2 or token_ids.size == 0 or not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(
            "calibration_data['token_ids'] must be a non-empty integer array of shape (batch, sequence "
            f"length); got dtype {token_ids.dtype} and shape {token_ids.shape}."
        )
    padding_mask = calibration_data.get("padding_mask")
    padding_mask = np.ones_like(token_ids) if padding_mask is None else ops.convert_to_numpy(padding_mask)
    padding_mask = np.asarray(padding_mask)
    if padding_mask.shape != token_ids.shape or not np.isin(padding_mask, (0, 1)).all():
        raise ValueError(
            "calibration_data['padding_mask'] must hold 0 (padding) or 1 for each token, with the shape "
            f"of 'token_ids' {token_ids.shape}; got shape {padding_mask.shape}."
        )
    if not padding_mask.any():
        raise ValueError("calibration_data['padding_mask'] is 0 everywhere: there is no token to score units on.")
    return {"token_ids": token_ids.astype("int32"), "padding_mask": padding_mask.astype("int32")}


@contextlib.contextmanager
def _recording_inputs(layer, record):
    """Calls `record(inputs)` on each call of `layer` (eager only) while inside; the layer is restored after."""
    own_call = vars(layer).get("call")
    original = layer.call

    def call(inputs, *args, **kwargs):
        record(inputs)
        return original(inputs, *args, **kwargs)

    layer.call = call
    try:
        yield
    finally:
        if own_call is None:
            del layer.call
        else:
            layer.call = own_call


def _llama_importance(backbone, tokens, layer_names=None):
    feedforwards = _keras_hub_compat.llama_feedforwards(backbone)
    names = list(feedforwards) if layer_names is None else list(layer_names)
    unknown = [name for name in names if name not in feedforwards]
    if unknown:
        raise ValueError(f"layer_names {unknown} are not decoder layers of the backbone: {list(feedforwards)}.")
    recorded = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        for name in names:
            record = recorded[name].append
            stack.enter_context(_recording_inputs(feedforwards[name].output, record))
        backbone(tokens, training=False)
    if any(len(inputs) != 1 for inputs in recorded.values()):
        raise RuntimeError(
            f"Expected one call of each feedforward output projection, got {[len(v) for v in recorded.values()]}."
        )
    mask = tokens["padding_mask"]
    return {name: _l2_over_batch(_per_example_magnitudes(inputs[0], mask)) for name, inputs in recorded.items()}


def _prune_llama(model, backbone, tokens, intermediate_dim):
    scores = _llama_importance(backbone, tokens)
    sliced = {}
    for name, feedforward in _keras_hub_compat.llama_feedforwards(backbone).items():
        kept = _kept_units(scores[name], intermediate_dim)
        sliced.update(_sliced_dense_values(feedforward.gate, kept_units=kept))
        sliced.update(_sliced_dense_values(feedforward.intermediate, kept_units=kept))
        sliced.update(_sliced_dense_values(feedforward.output, kept_inputs=kept))
    config = {**backbone.get_config(), "intermediate_dim": intermediate_dim}
    # LlamaBackbone's get_config leaves `tie_word_embeddings` out (keras-hub 0.32.0).
    config["tie_word_embeddings"] = backbone.tie_word_embeddings
    pruned_backbone = type(backbone).from_config(config)
    if model is backbone:
        pruned = pruned_backbone
    else:
        task_config = {**model.get_config(), "backbone": pruned_backbone, "preprocessor": model.preprocessor}
        pruned = type(model).from_config(task_config)
    _copy_weights(model, pruned, sliced)
    return pruned


# ---------------------------------------------------------------- Keras Sequential and functional models


def _check_examples(calibration_data):
    leaves = keras.tree.flatten(calibration_data) if calibration_data is not None else []
    if not leaves or any(len(getattr(leaf, "shape", ())) == 0 or leaf.shape[0] == 0 for leaf in leaves):
        raise TypeError(
            "calibration_data must be a batch of the model's inputs: a non-empty NumPy array or tensor of "
            "examples, or a list or dict of them (one per model input), not a dataset or a generator; "
            f"got {_describe(calibration_data)}."
        )


def _mixes_units(activation):
    return getattr(activation, "__name__", None) in UNIT_MIXING_ACTIVATIONS


class _KerasGraph:
    """Which layer reads which in a Sequential or functional model, from its public config."""

    def __init__(self, model):
        self.model = model
        if isinstance(model, keras.Sequential):
            if not model.built:
                raise ValueError(
                    f"The Sequential {model.name!r} is not built: start it with keras.Input or call it once."
                )
            # A Sequential has one input and one output; `inputs` exists once it is built.
            self.functional = keras.Model(model.inputs[0], model.outputs[0])
        else:
            self.functional = model
        try:
            config = self.functional.get_config()
        except NotImplementedError:
            config = {}
        if not isinstance(config, dict) or "input_layers" not in config:
            raise TypeError(f"Cannot prune the width of a {type(model).__name__}: supported are {SUPPORTED}.")
        self.calls = {layer["name"]: len(layer["inbound_nodes"]) for layer in config["layers"]}
        self.readers = {}
        for layer in config["layers"]:
            for source in set(_sources(layer["inbound_nodes"])):
                self.readers.setdefault(source, []).append(layer["name"])
        for source in _sources(config["output_layers"]):
            self.readers.setdefault(source, []).append("(a model output)")

    def dense(self, name):
        dense_names = [layer.name for layer in self.functional.layers if isinstance(layer, keras.layers.Dense)]
        if name not in dense_names:
            raise ValueError(f"{name!r} is not a Dense layer of {self.model.name!r}; its Dense layers: {dense_names}.")
        return self.functional.get_layer(name)

    def path_to_projection(self, name):
        """(the layer whose output the projection reads, the projection Dense) for the Dense `name`."""
        layer = self.dense(name)
        if _mixes_units(layer.activation):
            raise ValueError(f"Dense {name!r} ends in a softmax, which mixes its units: they cannot be pruned.")
        while True:
            if self.calls[layer.name] != 1:
                raise ValueError(
                    f"{layer.name!r} is called {self.calls[layer.name]} times; shared layers are not pruned."
                )
            readers = self.readers.get(layer.name, [])
            if len(readers) != 1 or readers[0] == "(a model output)":
                raise ValueError(
                    f"The output of {layer.name!r} goes to {readers or 'nothing'}: a pruned Dense's units must "
                    "reach exactly one Dense, directly or through Activation, Dropout, ReLU, LeakyReLU or ELU layers."
                )
            reader = self.functional.get_layer(readers[0])
            if isinstance(reader, keras.layers.Dense):
                if self.calls[reader.name] != 1:
                    raise ValueError(
                        f"{reader.name!r} is called {self.calls[reader.name]} times; shared layers are not pruned."
                    )
                return layer, reader
            if not isinstance(reader, ELEMENTWISE_LAYERS) or _mixes_units(getattr(reader, "activation", None)):
                raise ValueError(
                    f"The units of Dense {name!r} reach {reader.name!r} ({type(reader).__name__}), which would need "
                    "pruning too: supported between two Dense layers are Activation (not softmax), Dropout, ReLU, "
                    "LeakyReLU and ELU."
                )
            layer = reader

    def prunable_dense_names(self):
        names = []
        for layer in self.functional.layers:
            if isinstance(layer, keras.layers.Dense):
                try:
                    self.path_to_projection(layer.name)
                except ValueError:
                    continue
                names.append(layer.name)
        return names

    def importance(self, calibration_data, names):
        sources = [self.path_to_projection(name)[0] for name in names]
        # A dict of outputs stays a dict; a list of one output would come back as a bare tensor.
        features = keras.Model(self.functional.input, {name: source.output for name, source in zip(names, sources)})
        activations = features(calibration_data, training=False)
        return {name: _l2_over_batch(_per_example_magnitudes(activations[name])) for name in names}

    def pruned(self, calibration_data, units):
        scores = self.importance(calibration_data, list(units))
        kept_units, kept_inputs = {}, {}
        for name, width in units.items():
            kept_units[name] = _kept_units(scores[name], width)
            kept_inputs[self.path_to_projection(name)[1].name] = kept_units[name]
        sliced = {}
        for name in set(kept_units) | set(kept_inputs):
            dense = self.functional.get_layer(name)
            sliced.update(_sliced_dense_values(dense, kept_inputs.get(name), kept_units.get(name)))

        def narrower(layer):
            config = layer.get_config()
            if layer.name in units:
                config["units"] = int(units[layer.name])
            return type(layer).from_config(config)

        pruned = keras.models.clone_model(self.model, clone_function=narrower)
        _copy_weights(self.model, pruned, sliced)
        return pruned


def _sources(serialized):
    """The names of the layers whose outputs a serialized functional config refers to."""
    if isinstance(serialized, dict):
        config = serialized.get("config")
        if isinstance(config, dict) and "keras_history" in config:
            yield config["keras_history"][0]
            return
        for value in serialized.values():
            yield from _sources(value)
    elif isinstance(serialized, (list, tuple)):
        if len(serialized) == 3 and isinstance(serialized[0], str) and isinstance(serialized[1], int):
            yield serialized[0]  # an `output_layers` entry: [name, node index, tensor index]
            return
        for value in serialized:
            yield from _sources(value)
