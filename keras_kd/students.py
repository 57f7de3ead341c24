"""Students initialised from their teacher by dropping layers, as DistilBERT's student was.

DistilBERT (Sanh et al., 2019, "DistilBERT, a distilled version of BERT")
starts its student from BERT itself: the same architecture with half the
transformer layers, one layer in two kept, and the embeddings, the kept
layers and the output head copied from the teacher. `from_teacher` builds
such a student from a KerasHub transformer (a backbone or a task built on
one) or from a Keras Sequential or functional model, and copies every weight
it keeps exactly, so that distillation starts from a student which already
computes most of what its teacher does.
"""

import numbers
import sys
import warnings

import keras

from keras_kd.backend import _keras_compat

__all__ = ["from_teacher"]

# The KerasHub backbones whose depth `from_teacher` changes (subclasses
# included: Llama3Backbone is a LlamaBackbone), by their `keras_hub.models`
# names, with how the errors and the documentation name the family.
SUPPORTED_HUB_BACKBONES = {
    "GPT2Backbone": "GPT-2",
    "LlamaBackbone": "Llama (Llama 3 included)",
    "Qwen3Backbone": "Qwen 3",
    "Gemma3Backbone": "Gemma 3 (text-only)",
    "BertBackbone": "BERT",
}

# Layers that keep their input's shape and have weights but are no block of
# computation of their own: a student keeps them all.
_NORMALIZATION_LAYERS = (
    keras.layers.BatchNormalization,
    keras.layers.GroupNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Normalization,
    keras.layers.RMSNormalization,
)


def from_teacher(teacher, *, num_layers=None, keep_layers=None, name=None):
    """A shallower copy of `teacher`: the same model with some of its layers dropped, the rest copied exactly.

    What counts as a layer that can be dropped depends on the teacher:

    - a KerasHub backbone, or a KerasHub task (`CausalLM`, `TextClassifier`,
      ...) built on one, of the GPT-2, Llama (Llama 3 included), Qwen 3,
      Gemma 3 (text-only) or BERT family: its transformer layers
      (`backbone.transformer_layers`). The student is the same class built
      from the teacher's config with `num_layers` set (and any per-layer list
      in the config cut to the kept layers); its embeddings, final
      normalization, the kept transformer layers and a task's head get the
      teacher's weights, and a task keeps the teacher's preprocessor object.
    - a Sequential or functional `keras.Model` (an MLP, a CNN): the layers
      with weights whose output has the shape of their input, such as a
      `Dense(64)` after a 64-wide layer or a `Conv2D` with `padding="same"`
      and as many filters as its input has channels. Normalization layers
      are never dropped. In a functional model a layer is droppable only if
      it is called once, on one tensor, that no other layer reads (so the
      layers inside a residual branch are not: their input also feeds the
      sum). Dropping a layer passes its input on unchanged: a Sequential
      student is a new Sequential of the kept layers, a functional one the
      teacher's graph with each dropped layer replaced by
      `keras.layers.Identity`.

    `num_layers` and `keep_layers` count among those droppable layers only
    (index 0 is the first droppable layer), never among the others.

    Gemma 3 (and any family whose layers differ by their position) decides
    each layer's kind from its index: in a Gemma 3 with sliding-window
    attention, layers `5, 11, 17, ...` attend globally with a longer RoPE
    wavelength, the others locally. A student's layer `j` is built as the
    layer at index `j` of a model of its depth, and receives the weights of
    the teacher's layer `keep_layers[j]`; where the two kinds differ the
    student's layer computes something else than its teacher's did, and a
    `UserWarning` names those layers and the settings that differ. Choose
    `keep_layers` so that kept layers keep their kind (teacher layer `i`
    at student index `j` with `i % 6 == 5` exactly when `j % 6 == 5`) to
    avoid it.

    Args:
        teacher: a KerasHub backbone or task of a supported family, or a
            Sequential or functional `keras.Model` (not a subclassed one).
        num_layers: how many droppable layers the student keeps, from 1 to
            one less than the teacher has: they are spread evenly from the
            first, `i * L // num_layers` for `i` in `range(num_layers)` out of
            `L` (half of them gives `0, 2, 4, ...`, as DistilBERT).
        keep_layers: the indices of the droppable layers to keep instead, in
            increasing order, without repeats, at least one and not all.
            Give exactly one of `num_layers` and `keep_layers`.
        name: the student's name; defaults to the teacher's name with
            `"_student"` appended. (A KerasHub task's backbone keeps its
            name.)

    Returns:
        A new, built `keras.Model` of the teacher's kind (not compiled).

    Raises:
        TypeError: for a teacher that is no `keras.Model`, a subclassed model,
            a KerasHub model of another family, or a `num_layers` or
            `keep_layers` that is not an int or a list of ints.
        ValueError: if neither or both of `num_layers` and `keep_layers` are
            given; for a `num_layers` or `keep_layers` that keeps no layer,
            every layer, or an index out of range, repeated or out of order;
            for a teacher with no droppable layer; or if a student weight does
            not receive exactly one teacher weight of its shape.

    Example:

    ```python
    import keras
    import numpy as np

    from keras_kd import students

    teacher = keras.Sequential(
        [keras.Input((4,))] + [keras.layers.Dense(4, activation="relu") for _ in range(4)] + [keras.layers.Dense(2)]
    )
    student = students.from_teacher(teacher, num_layers=2)  # keeps Dense 0 and 2 of the four 4-to-4 ones
    assert len(student.layers) == 3
    x = np.ones((1, 4), "float32")
    np.testing.assert_array_equal(student.layers[-1].kernel, teacher.layers[-1].kernel)
    print(student(x).shape)
    ```
    """
    if not isinstance(teacher, keras.Model):
        raise TypeError(
            f"`teacher` must be a keras.Model (a KerasHub backbone or task, or a Sequential or functional model); "
            f"got {teacher!r} of type {type(teacher).__name__}."
        )
    if name is None:
        name = f"{teacher.name}_student"
    if _is_hub_model(teacher):
        return _hub_student(teacher, num_layers, keep_layers, name)
    if isinstance(teacher, keras.Sequential):
        return _sequential_student(teacher, num_layers, keep_layers, name)
    if _keras_compat.functional_graph(teacher) is None:
        raise TypeError(
            f"{teacher.name!r} is a subclassed model ({type(teacher).__name__}): its layers are called by its own "
            "Python code, so there is no graph to drop layers from. `from_teacher` takes a Sequential or "
            "functional keras.Model, or a KerasHub backbone or task of the families "
            f"{_supported_families()}."
        )
    return _functional_student(teacher, num_layers, keep_layers, name)


def _kept_indices(total, num_layers, keep_layers, what):
    """The sorted indices, out of `total` droppable layers, that a student keeps.

    `what` names the layers in the errors (such as "transformer layers").
    """
    if (num_layers is None) == (keep_layers is None):
        raise ValueError(
            "Give exactly one of `num_layers` (how many layers to keep, spread evenly) and `keep_layers` (which "
            f"to keep); got num_layers={num_layers!r} and keep_layers={keep_layers!r}. The teacher has {total} "
            f"{what}."
        )
    if num_layers is not None:
        if not _is_int(num_layers):
            raise TypeError(f"`num_layers` must be an int; got {num_layers!r} of type {type(num_layers).__name__}.")
        num_layers = int(num_layers)
        if not 1 <= num_layers < total:
            raise ValueError(_range_message(f"num_layers={num_layers}", total, what))
        return [index * total // num_layers for index in range(num_layers)]
    if isinstance(keep_layers, (str, bytes)) or not hasattr(keep_layers, "__iter__"):
        raise TypeError(f"`keep_layers` must be a list of ints; got {keep_layers!r}.")
    keep_layers = list(keep_layers)
    for index in keep_layers:
        if not _is_int(index):
            raise TypeError(f"`keep_layers` must hold ints; got {index!r} in {keep_layers!r}.")
    keep_layers = [int(index) for index in keep_layers]
    if not keep_layers:
        raise ValueError(_range_message("keep_layers=[]", total, what))
    out_of_range = [index for index in keep_layers if not 0 <= index < total]
    if out_of_range:
        raise ValueError(
            f"keep_layers={keep_layers} holds {out_of_range}, out of range: the teacher has {total} {what}, "
            f"indexed 0 to {total - 1}."
        )
    if len(set(keep_layers)) != len(keep_layers):
        repeated = sorted({index for index in keep_layers if keep_layers.count(index) > 1})
        raise ValueError(f"keep_layers={keep_layers} repeats {repeated}; give each index once.")
    if keep_layers != sorted(keep_layers):
        raise ValueError(
            f"keep_layers={keep_layers} is not in increasing order; a student keeps its teacher's layers in "
            f"their order, so give them as {sorted(keep_layers)}."
        )
    if len(keep_layers) == total:
        raise ValueError(_range_message(f"keep_layers={keep_layers}", total, what))
    return keep_layers


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _range_message(request, total, what):
    if total < 2:
        return f"{request}: the teacher has only {total} {what}, so there is none to drop."
    return (
        f"{request} is out of range: a student keeps from 1 to {total - 1} of the teacher's {total} {what} "
        "(keeping all would not make it smaller; keras.models.clone_model copies a model)."
    )


# --- KerasHub transformers. --------------------------------------------------


def _is_hub_model(model):
    keras_hub = sys.modules.get("keras_hub")
    return keras_hub is not None and isinstance(model, (keras_hub.models.Backbone, keras_hub.models.Task))


def _supported_families():
    return ", ".join(SUPPORTED_HUB_BACKBONES.values())


def _hub_student(teacher, num_layers, keep_layers, name):
    import keras_hub

    is_task = isinstance(teacher, keras_hub.models.Task)
    backbone = teacher.backbone if is_task else teacher
    supported = tuple(getattr(keras_hub.models, class_name) for class_name in SUPPORTED_HUB_BACKBONES)
    if not isinstance(backbone, supported):
        raise TypeError(
            f"{teacher.name!r} is a KerasHub {type(backbone).__name__}, a family `from_teacher` cannot shrink; "
            f"it shrinks the families {_supported_families()} (backbones {', '.join(SUPPORTED_HUB_BACKBONES)} and "
            "the tasks built on them)."
        )
    if getattr(backbone, "vision_encoder", None) is not None:
        raise TypeError(
            f"{teacher.name!r} is a Gemma 3 with a vision encoder; `from_teacher` shrinks text-only Gemma 3 "
            "models (built with vision_encoder=None) only."
        )
    teacher_layers = list(backbone.transformer_layers)
    kept = _kept_indices(len(teacher_layers), num_layers, keep_layers, "transformer layers")
    config = _shallower_config(backbone.get_config(), len(teacher_layers), kept)
    if is_task:
        student_backbone = type(backbone).from_config(config)
        task_config = teacher.get_config()
        task_config.update(backbone=student_backbone, preprocessor=teacher.preprocessor, name=name)
        student = type(teacher).from_config(task_config)
    else:
        config["name"] = name
        student = student_backbone = type(backbone).from_config(config)
    layer_pairs = list(zip(student_backbone.transformer_layers, [teacher_layers[index] for index in kept]))
    _warn_if_layers_differ(layer_pairs)
    _copy_weights(teacher, student, layer_pairs, teacher_layers)
    return student


def _shallower_config(config, total, kept):
    """`config` with `num_layers` set to the kept count and each per-layer list cut to the kept layers."""
    config = dict(config)
    config["num_layers"] = len(kept)
    for key, value in config.items():
        if isinstance(value, (list, tuple)) and len(value) == total:
            config[key] = type(value)(value[index] for index in kept)
    return config


def _warn_if_layers_differ(layer_pairs):
    """Warns for each kept layer built with other settings than its teacher layer (Gemma 3's attention kinds)."""
    differences = []
    for student_layer, teacher_layer in layer_pairs:
        student_config, teacher_config = _layer_config(student_layer), _layer_config(teacher_layer)
        if student_config is None or teacher_config is None:
            continue
        keys = sorted(
            key
            for key in set(student_config) | set(teacher_config)
            if key != "name" and student_config.get(key) != teacher_config.get(key)
        )
        if keys:
            settings = ", ".join(f"{key}={teacher_config.get(key)!r} -> {student_config.get(key)!r}" for key in keys)
            differences.append(f"{teacher_layer.name} -> {student_layer.name} ({settings})")
    if differences:
        warnings.warn(
            "These kept layers are built with other settings in the student than in the teacher, because their "
            "family sets them by layer index, so they compute something else with the same weights: "
            + "; ".join(differences)
            + ". Pass keep_layers so that each kept layer keeps its settings to avoid it.",
            UserWarning,
            stacklevel=4,
        )


def _layer_config(layer):
    # Some KerasHub layers' get_config reads attributes their constructor
    # never sets (LlamaTransformerDecoder's rope_scaling_factor): such a layer
    # is not compared.
    try:
        return layer.get_config()
    except (AttributeError, NotImplementedError):
        return None


def _copy_weights(teacher, student, layer_pairs, teacher_layers):
    """Assigns to each student weight its one teacher weight, or raises before assigning any.

    The weights of each pair of layers in `layer_pairs` (student layer,
    teacher layer) are matched by their path inside the layer; the other
    weights of the student by their whole path among the teacher's weights
    outside `teacher_layers` (all the teacher's transformer layers, kept or
    dropped).
    """
    sources = {}
    for student_layer, teacher_layer in layer_pairs:
        teacher_weights = _by_path(teacher_layer.weights, teacher_layer.name, teacher.name)
        for weight in student_layer.weights:
            sources[id(weight)] = (weight, teacher_weights.get(_path_inside(weight.path, student_layer.name)))
    in_layers = {id(weight) for layer in teacher_layers for weight in layer.weights}
    teacher_rest = _by_path([weight for weight in teacher.weights if id(weight) not in in_layers], None, teacher.name)
    used = set()
    for weight in student.weights:
        if id(weight) not in sources:
            source = teacher_rest.get(weight.path)
            sources[id(weight)] = (weight, source)
            if source is not None:
                used.add(weight.path)
    problems = [
        f"{weight.path} {tuple(weight.shape)} <- "
        + ("nothing" if source is None else f"{source.path} {tuple(source.shape)}")
        for weight, source in sources.values()
        if source is None or tuple(source.shape) != tuple(weight.shape)
    ]
    unused = sorted(set(teacher_rest) - used)
    if problems or unused:
        raise ValueError(
            f"Cannot initialise the student of {teacher.name!r} from it: each student weight needs exactly one "
            f"teacher weight of its shape. Mismatches: {problems or 'none'}; teacher weights the student would "
            f"not receive: {unused or 'none'}."
        )
    for weight, source in sources.values():
        _assign_copy(weight, source)


def _path_inside(path, layer_name):
    return path.split(f"{layer_name}/", 1)[-1]


def _by_path(weights, layer_name, model_name):
    found = {}
    for weight in weights:
        path = weight.path if layer_name is None else _path_inside(weight.path, layer_name)
        if path in found:
            raise ValueError(
                f"Two weights of {model_name!r} share the path {weight.path!r}, so the student's copy of it "
                "would be ambiguous."
            )
        found[path] = weight
    return found


# --- Keras Sequential and functional models. ---------------------------------


def _sequential_student(teacher, num_layers, keep_layers, name):
    try:
        teacher_inputs = teacher.inputs
    except (AttributeError, ValueError):
        teacher_inputs = None
    if not teacher_inputs:
        raise ValueError(
            f"The Sequential {teacher.name!r} is not built; give it an Input (keras.Input(shape)) or build it "
            "before making a student of it."
        )
    reasons = {layer.name: _shape_reason(layer) for layer in teacher.layers if _has_weights(layer)}
    dropped = _dropped_layers(teacher, reasons, num_layers, keep_layers)
    inputs = keras.Input(batch_shape=teacher_inputs[0].shape, dtype=teacher_inputs[0].dtype)
    kept_layers = [layer for layer in teacher.layers if layer.name not in dropped]
    student = keras.Sequential([inputs, *[_clone_layer(layer) for layer in kept_layers]], name=name)
    _copy_kept_layers(kept_layers, student)
    return student


def _functional_student(teacher, num_layers, keep_layers, name):
    config = teacher.get_config()
    readers = _tensor_readers(config)
    reasons = {}
    for entry in config["layers"]:
        if not entry["inbound_nodes"]:
            continue  # an InputLayer
        layer = teacher.get_layer(entry["name"])
        if _has_weights(layer):
            reasons[layer.name] = _call_reason(entry, readers) or _shape_reason(layer)
    dropped = _dropped_layers(teacher, reasons, num_layers, keep_layers)

    def clone(layer):
        if layer.name in dropped:
            return keras.layers.Identity(name=layer.name)
        return _clone_layer(layer)

    clone = keras.models.clone_model(teacher, clone_function=clone)
    student = keras.Model(clone.input, clone.output, name=name)
    _copy_kept_layers([layer for layer in teacher.layers if layer.name not in dropped], student)
    return student


def _has_weights(layer):
    return bool(layer.weights) and not isinstance(layer, _NORMALIZATION_LAYERS)


def _shape_reason(layer):
    """Why `layer` cannot be dropped for its shapes, or None if its output has its input's shape."""
    input_shape, output_shape = _shape(layer.input), _shape(layer.output)
    if input_shape is None or output_shape is None:
        return "it takes or returns several tensors"
    if input_shape != output_shape:
        return f"its output shape {output_shape} is not its input shape {input_shape}"
    return None


def _shape(tensor):
    return tuple(tensor.shape) if hasattr(tensor, "shape") else None


def _call_reason(entry, readers):
    """Why the layer of a functional config `entry` cannot be dropped for how it is called, or None."""
    nodes = entry["inbound_nodes"]
    if len(nodes) != 1:
        return f"it is called {len(nodes)} times"
    arguments = list(_tensor_histories(nodes[0]["args"]))
    if len(arguments) != 1 or nodes[0]["kwargs"] or len(nodes[0]["args"]) != 1:
        return "it is called on more than one tensor or with keyword arguments"
    others = [reader for reader in readers[arguments[0]] if reader != entry["name"]]
    if others:
        return f"its input is also read by {', '.join(others)}, so dropping it would change what those read"
    return None


def _tensor_readers(config):
    """{(layer name, node index, tensor index) of a tensor: names of the layers (or "the model's output") reading it}."""
    readers = {}
    for entry in config["layers"]:
        for node in entry["inbound_nodes"]:
            for history in _tensor_histories([node["args"], node["kwargs"]]):
                readers.setdefault(history, []).append(entry["name"])
    for history in _output_histories(config["output_layers"]):
        readers.setdefault(history, []).append("the model's output")
    return readers


def _tensor_histories(structure):
    """The `keras_history` of each tensor in a serialized call's arguments."""
    if isinstance(structure, dict):
        if structure.get("class_name") == "__keras_tensor__":
            yield tuple(structure["config"]["keras_history"])
            return
        structure = list(structure.values())
    if isinstance(structure, (list, tuple)):
        for item in structure:
            yield from _tensor_histories(item)


def _output_histories(structure):
    if isinstance(structure, (list, tuple)) and len(structure) == 3 and isinstance(structure[0], str):
        yield tuple(structure)
    elif isinstance(structure, dict):
        for item in structure.values():
            yield from _output_histories(item)
    elif isinstance(structure, (list, tuple)):
        for item in structure:
            yield from _output_histories(item)


def _dropped_layers(teacher, reasons, num_layers, keep_layers):
    """The names of the layers the student drops, from {name of each layer with weights: why it is not droppable}."""
    droppable = [layer_name for layer_name, reason in reasons.items() if reason is None]
    if not droppable:
        raise ValueError(
            f"{teacher.name!r} has no layer that can be dropped: a droppable layer has weights and an output of "
            f"the shape of its input (e.g. Dense(64) after a 64-wide layer). {_not_droppable(reasons)}"
        )
    what = f"droppable layers ({', '.join(droppable)}; {_not_droppable(reasons)})"
    kept = _kept_indices(len(droppable), num_layers, keep_layers, what)
    return {layer_name for index, layer_name in enumerate(droppable) if index not in kept}


def _not_droppable(reasons):
    described = [f"{layer_name}: {reason}" for layer_name, reason in reasons.items() if reason is not None]
    return f"Not droppable: {'; '.join(described)}." if described else "No other layer has weights."


def _clone_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _copy_kept_layers(teacher_layers, student):
    """Assigns each kept teacher layer's weights to the student's layer of the same name."""
    for teacher_layer in teacher_layers:
        if not teacher_layer.weights:
            continue  # an InputLayer may have another name in the clone
        student_layer = student.get_layer(teacher_layer.name)
        pairs = list(zip(student_layer.weights, teacher_layer.weights))
        if len(student_layer.weights) != len(teacher_layer.weights) or any(
            tuple(copy.shape) != tuple(source.shape) for copy, source in pairs
        ):
            raise ValueError(
                f"The student's layer {teacher_layer.name!r} has weights "
                f"{[tuple(weight.shape) for weight in student_layer.weights]} but the teacher's has "
                f"{[tuple(weight.shape) for weight in teacher_layer.weights]}; they must match to be copied."
            )
        for copy, source in pairs:
            _assign_copy(copy, source)


def _assign_copy(weight, source):
    # A copy, not the teacher's array itself: on JAX a variable assigned
    # another's array shares its buffer, and a train step that donates both
    # models' buffers would donate that one twice.
    weight.assign(keras.ops.copy(source))
