"""Layers named by a path through nested models, such as `"llama3_backbone/transformer_layer_3"`.

A KerasHub task (a `CausalLM`, a `TextClassifier`, an `ImageClassifier`)
holds its backbone as one layer, a functional model whose own layers are the
transformer blocks or the residual stages. A path names a layer inside such
a nested model: the names `model.get_layer` and `model.summary()` show, one
per level, joined by `/`.

`outputs_with_features` reads the outputs of the layers that paths name in
the same forward pass as the model's output. Where a path enters a nested
model, that model is called through a copy returning the inner layers'
outputs as well, and the outer graph is called again around it, so the
model built on the result runs each layer once.
"""

import keras

from keras_kd.backend import _keras_compat

SEPARATOR = "/"


def parts(path):
    """The layer names along `path`: `"a/b"` gives `("a", "b")`.

    Raises:
        ValueError: for an empty name along the path.
    """
    names = tuple(path.split(SEPARATOR))
    if not all(names):
        raise ValueError(
            f"The layer path {path!r} has an empty name in it. Write the layer names from the outer "
            f"model inwards, joined by {SEPARATOR!r}, e.g. 'llama3_backbone/transformer_layer_3'."
        )
    return names


def find_layer(model, path, role):
    """The layer `path` names inside `model`.

    Raises:
        ValueError: when a name along the path is not a layer at that level
            (the error lists the layers there) or a layer along it is not a
            functional model (nothing inside it can be named).
    """
    container = model
    names = parts(path)
    for depth, name in enumerate(names):
        if depth and _keras_compat.functional_graph(container) is None:
            raise ValueError(
                f"The {role} layer path {path!r} goes inside {SEPARATOR.join(names[:depth])!r}, a "
                f"{type(container).__name__} that is not a functional model: only the layers of a "
                "functional or Sequential model can be named. Name that layer itself."
            )
        available = [layer.name for layer in container.layers]
        if name not in available:
            where = f"The {role} {model.name!r}"
            if depth:
                where = f"In the {role} layer path {path!r}, {SEPARATOR.join(names[:depth])!r}"
            raise ValueError(f"{where} has no layer named {name!r}. Its layers: {available}.")
        container = container.get_layer(name)
    return container


def outputs_with_features(model, paths):
    """`(outputs, features)`: `model`'s outputs and the output of each layer of `paths`, in one graph.

    Args:
        model: A functional or Sequential model.
        paths: Tuples of layer names (`parts`), each naming a layer that
            `find_layer` finds.

    Returns:
        The outputs, in the structure of the model's, and a list with the
        output of each path's layer (its first call in the graph).
    """
    graph = _keras_compat.functional_graph(model)
    nested = {}
    for path in paths:
        if len(path) > 1:
            nested.setdefault(path[0], []).append(path[1:])
    if not nested:
        return graph.output, [_output_in_graph(model, model.get_layer(path[0])) for path in paths]

    extended = {
        id(model.get_layer(name)): _NestedWithFeatures(model.get_layer(name), inner) for name, inner in nested.items()
    }
    first_outputs = {}

    def call(layer, *args, **kwargs):
        nested_model = extended.get(id(layer))
        if nested_model is None:
            outputs = layer(*args, **kwargs)
            first_outputs.setdefault(id(layer), outputs)
            return outputs
        outputs, features = nested_model(*args, **kwargs)
        first_outputs.setdefault(id(layer), dict(zip(nested_model.paths, features)))
        return outputs

    outputs = _keras_compat.replay_graph(graph, call)
    features = []
    for path in paths:
        found = first_outputs[id(model.get_layer(path[0]))]
        features.append(found if len(path) == 1 else found[path[1:]])
    return outputs, features


class _NestedWithFeatures:
    """Calls a nested functional model through a copy that also returns its inner layers' outputs."""

    def __init__(self, model, paths):
        self.paths = list(paths)
        outputs, features = outputs_with_features(model, self.paths)
        self.structure = outputs
        flat = keras.tree.flatten(outputs)
        self.num_outputs = len(flat)
        inputs = _keras_compat.functional_graph(model).input
        self.model = keras.Model(inputs, [*flat, *features], name=f"{model.name}_with_features")

    def __call__(self, *args, **kwargs):
        values = self.model(*args, **kwargs)
        outputs = keras.tree.pack_sequence_as(self.structure, values[: self.num_outputs])
        return outputs, values[self.num_outputs :]


def _output_in_graph(model, layer):
    output = _keras_compat.output_in_graph(model, layer)
    return layer.output if output is None else output
