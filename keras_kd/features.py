"""Feature matching: intermediate layers of the student pulled towards the teacher's.

A `FeatureMatch` names one teacher layer and one student layer. The Distiller
builds, once, a feature extractor of each model (`feature_extractor`: a
`keras.Model` sharing the model's layers that returns the logits first, then
the matched layers' outputs), so each model runs exactly once per step. Where
the shapes differ, a trainable adapter owned by the Distiller (not the
student) projects the student's feature into the teacher's space.
"""

import keras

from keras_kd import losses as kd_losses
from keras_kd import validation
from keras_kd.backend import _keras_compat


@keras.saving.register_keras_serializable(package="keras_kd")
class FeatureMatch:
    """One teacher-layer / student-layer pair and how to compare them.

    Args:
        teacher_layer: Name of a layer of the teacher, or the layer itself.
        student_layer: Name of a layer of the student, or the layer itself.
        loss: A `keras_kd.losses.FeatureLoss`, or one of the strings that
            `keras_kd.losses.get_feature_loss` accepts (`"mse"` is the FitNets
            hint loss).
        weight: Non-negative weight of this term in the total loss.
        adapter: `"auto"` (a 1x1 convolution for feature maps, with resizing
            where the spatial sizes differ, or a Dense layer for vectors,
            created only when the shapes differ), `None` (the shapes must
            already match), or a `keras.layers.Layer` mapping the student's
            feature to the teacher's shape.
        name: Name of the term in the logs; defaults to
            `"<loss>_<student_layer>"`.

    Example:

    ```python
    import keras
    import keras_kd

    def classifier(width, feature_layer):
        inputs = keras.Input((8,))
        features = keras.layers.Dense(width, activation="relu", name=feature_layer)(inputs)
        return keras.Model(inputs, keras.layers.Dense(3)(features))

    teacher, student = classifier(32, "t_features"), classifier(8, "s_features")
    match = keras_kd.FeatureMatch(teacher_layer="t_features", student_layer="s_features",
                                  loss="mse", weight=1.0)   # a Dense adapter maps 8 -> 32
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    ```
    """

    def __init__(self, teacher_layer, student_layer, loss="mse", weight=1.0, adapter="auto", name=None):
        self.teacher_layer = layer_name("teacher_layer", teacher_layer)
        self.student_layer = layer_name("student_layer", student_layer)
        self.loss = kd_losses.get_feature_loss(loss)
        self.weight = validation.check_real_number("weight", weight, schedulable=False)
        if self.weight < 0:
            raise ValueError(f"`weight` of a FeatureMatch must be >= 0; got {weight!r}.")
        if not (adapter in ("auto", None) or isinstance(adapter, keras.layers.Layer)):
            raise ValueError(f"`adapter` must be 'auto', None or a keras.layers.Layer; got {adapter!r}.")
        self.adapter = adapter
        self.name = name or f"{self.loss.name}_{self.student_layer}"

    def get_config(self):
        adapter = self.adapter
        if isinstance(adapter, keras.layers.Layer):
            adapter = keras.saving.serialize_keras_object(adapter)
        return {
            "teacher_layer": self.teacher_layer,
            "student_layer": self.student_layer,
            "loss": keras.saving.serialize_keras_object(self.loss),
            "weight": self.weight,
            "adapter": adapter,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("adapter"), dict):
            config["adapter"] = keras.saving.deserialize_keras_object(config["adapter"])
        return cls(**config)


def layer_name(argument, layer):
    """The name of `layer`, given as a name or a layer; `argument` names it in errors."""
    if isinstance(layer, keras.layers.Layer):
        return layer.name
    if isinstance(layer, str) and layer:
        return layer
    raise TypeError(f"`{argument}` must be a layer name or a keras.layers.Layer; got {layer!r}.")


def feature_extractor(model, role, layer_names):
    """A `keras.Model` sharing `model`'s layers that returns `[logits, *features]`; `model` itself without layers.

    Each feature is the output of that layer's call inside `model`'s graph,
    so the extractor runs each layer once, a nested functional model (such
    as a KerasHub classifier's backbone) included.

    Args:
        model: A functional or Sequential `keras.Model` that outputs logits.
        role: `"teacher"` or `"student"`, for the errors.
        layer_names: Names of layers of `model` whose outputs to return.

    Raises:
        ValueError: for a subclassed model (no graph to read layers from) or
            a layer name the model does not have.
    """
    if not layer_names:
        return model
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"Feature matching needs a Functional or Sequential {role} (with an "
            f"Input), so that intermediate layers can be read in the same "
            f"forward pass; {model.name!r} is a subclassed model. Rebuild it "
            "with the functional API, or distil its logits only."
        )
    available = [layer.name for layer in model.layers]
    features = []
    for name in layer_names:
        if name not in available:
            raise ValueError(f"The {role} {model.name!r} has no layer named {name!r}. Its layers: {available}.")
        layer = model.get_layer(name)
        output = _keras_compat.output_in_graph(model, layer)
        features.append(layer.output if output is None else output)
    if len(inputs) == 1:
        inputs = inputs[0]
    return keras.Model(inputs, [outputs[0], *features], name=f"{model.name}_features")


# The name this function had before "view" came to mean an augmented input alone.
multi_output_view = feature_extractor


def split_extracted(outputs, feature_matches):
    """`(logits, features)` from what a `feature_extractor` returned: `model` alone returns logits."""
    if not feature_matches:
        return outputs, []
    return outputs[0], list(outputs[1:])


def make_adapters(feature_matches, teacher_extractor, student_extractor):
    """The adapter of each match (`make_adapter`), from the features' shapes in the two extractors."""
    if not feature_matches:
        return []
    return [
        make_adapter(match, student_feature.shape, teacher_feature.shape)
        for match, teacher_feature, student_feature in zip(
            feature_matches, teacher_extractor.outputs[1:], student_extractor.outputs[1:]
        )
    ]


def make_adapter(match, student_shape, teacher_shape):
    """The layer mapping the student's feature to the teacher's, or None.

    Raises:
        ValueError: when the shapes differ but cannot be adapted.
    """
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if not match.loss.requires_matching_shapes:
        adapter = match.adapter if isinstance(match.adapter, keras.layers.Layer) else None
    elif isinstance(match.adapter, keras.layers.Layer):
        adapter = match.adapter
    elif student_shape[1:] == teacher_shape[1:]:
        return None
    elif match.adapter is None:
        raise ValueError(
            f"{match.name}: the student feature {student_shape} and the "
            f"teacher feature {teacher_shape} differ, and adapter=None. Use "
            "adapter='auto' to learn a projection."
        )
    elif len(student_shape) == len(teacher_shape) == 2:
        adapter = keras.layers.Dense(teacher_shape[-1], name=f"{match.name}_adapter")
    elif len(student_shape) == len(teacher_shape) == 4:
        layers = [keras.layers.Conv2D(teacher_shape[-1], 1, name=f"{match.name}_adapter_1x1")]
        if student_shape[1:3] != teacher_shape[1:3]:
            layers.append(keras.layers.Resizing(*teacher_shape[1:3], name=f"{match.name}_adapter_resize"))
        adapter = keras.Sequential(layers, name=f"{match.name}_adapter")
    else:
        raise ValueError(
            f"{match.name}: cannot adapt the student feature of shape "
            f"{student_shape} to the teacher feature of shape {teacher_shape}. "
            "Automatic adapters handle vectors (batch, units) and channels-last "
            "feature maps (batch, height, width, channels) of the same rank; "
            "pass your own keras layer as `adapter`, or pick other layers."
        )
    if adapter is None:
        return None
    adapter.build(student_shape)
    adapted = tuple(adapter.compute_output_shape(student_shape))
    if match.loss.requires_matching_shapes and adapted[1:] != teacher_shape[1:]:
        raise ValueError(
            f"{match.name}: the adapter maps the student feature {student_shape} "
            f"to {adapted}, but the teacher feature is {teacher_shape}."
        )
    return adapter
