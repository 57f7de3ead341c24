"""Feature matching: intermediate layers of the student pulled towards the teacher's.

A `FeatureMatch` names one teacher layer and one student layer. The Distiller
builds, once, a feature extractor of each model (`feature_extractor`: a
`keras.Model` sharing the model's layers that returns the logits first, then
the matched layers' outputs), so each model runs exactly once per step. Where
the shapes differ, a trainable adapter owned by the Distiller (not the
student) projects the student's feature into the teacher's space. A feature
with the logits' positions (hidden states `(batch, tokens, dim)` beside
logits `(batch, tokens, classes)`) is compared per position and averaged over
the valid positions, as the logit terms are (`feature_terms`).
"""

import keras

from keras_kd import layer_paths, validation
from keras_kd import losses as kd_losses
from keras_kd import positions as kd_positions


@keras.saving.register_keras_serializable(package="keras_kd")
class FeatureMatch:
    """One teacher-layer / student-layer pair and how to compare them.

    Args:
        teacher_layer: Name of a layer of the teacher, or the layer itself;
            or the path to a layer inside a nested model, the names from the
            outer model inwards joined by `/`, such as
            `"llama3_backbone/transformer_layer_3"` in a KerasHub causal LM
            (see `keras_kd.layer_paths`).
        student_layer: The same for the student.
        loss: A `keras_kd.losses.FeatureLoss`, or one of the strings that
            `keras_kd.losses.get_feature_loss` accepts (`"mse"` is the FitNets
            hint loss).
        weight: Non-negative weight of this term in the total loss.
        adapter: `"auto"` (a 1x1 convolution for feature maps, with resizing
            where the spatial sizes differ, or a Dense layer on the last axis
            for vectors and token sequences `(batch, tokens, dim)`, created
            only when the shapes differ), `None` (the shapes must
            already match), or a `keras.layers.Layer` mapping the student's
            feature to the teacher's shape.
        name: Name of the term in the logs; defaults to
            `"<loss>_<student_layer>"`, with the `/` of a layer path written
            `_` (`"mse_llama3_backbone_transformer_layer_1"`).

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
        self.name = name or f"{self.loss.name}_{self.student_layer.replace(layer_paths.SEPARATOR, '_')}"
        if not isinstance(self.name, str) or layer_paths.SEPARATOR in self.name:
            raise ValueError(
                f"`name` of a FeatureMatch must be a string without {layer_paths.SEPARATOR!r} (it names the "
                f"match's adapter layer); got {name!r}."
            )

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
    as a KerasHub classifier's backbone) included. A name may be a path to
    a layer inside a nested model (`keras_kd.layer_paths`), such as
    `"llama3_backbone/transformer_layer_3"`.

    Args:
        model: A functional or Sequential `keras.Model` that outputs logits.
        role: `"teacher"` or `"student"`, for the errors.
        layer_names: Names or paths of layers of `model` whose outputs to return.

    Raises:
        ValueError: for a subclassed model (no graph to read layers from), a
            name or path that names no layer, or a layer whose output is not
            one tensor.
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
    for name in layer_names:
        layer_paths.find_layer(model, name, role)
    outputs, features = layer_paths.outputs_with_features(model, [layer_paths.parts(name) for name in layer_names])
    for name, feature in zip(layer_names, features):
        if not isinstance(feature, keras.KerasTensor):
            raise ValueError(
                f"The output of the {role} layer {name!r} is a {type(feature).__name__}, not one tensor, "
                "so it cannot be matched. Name a layer that outputs a single tensor (e.g. a layer after it)."
            )
    if len(inputs) == 1:
        inputs = inputs[0]
    return keras.Model(inputs, [keras.tree.flatten(outputs)[0], *features], name=f"{model.name}_features")


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

    With `adapter="auto"`, where the shapes differ (the ranks must agree):
    a channels-last feature map `(batch, height, width, channels)` gets a
    1x1 convolution (and resizing where the spatial sizes differ); any other
    feature whose shapes differ in the last axis only (vectors `(batch,
    units)`, token sequences `(batch, tokens, dim)`) gets a Dense layer on
    the last axis, the same learned projection at every position.

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
    elif len(student_shape) == len(teacher_shape) == 4:
        layers = [keras.layers.Conv2D(teacher_shape[-1], 1, name=f"{match.name}_adapter_1x1")]
        if student_shape[1:3] != teacher_shape[1:3]:
            layers.append(keras.layers.Resizing(*teacher_shape[1:3], name=f"{match.name}_adapter_resize"))
        adapter = keras.Sequential(layers, name=f"{match.name}_adapter")
    elif len(student_shape) == len(teacher_shape) >= 2:
        if not _same_known_sizes(student_shape[1:-1], teacher_shape[1:-1]):
            raise ValueError(
                f"{match.name}: the student feature {student_shape} and the teacher "
                f"feature {teacher_shape} have different positions ({student_shape[1:-1]} "
                f"and {teacher_shape[1:-1]}). A sequence feature (batch, positions, dim) "
                "is adapted by a Dense projection of its last axis at each position, so "
                "both need the same positions (the same tokenizer and sequence length): "
                "only the last axis may differ. Pass your own keras layer as `adapter`, "
                "or pick other layers."
            )
        adapter = keras.layers.Dense(teacher_shape[-1], name=f"{match.name}_adapter")
    else:
        raise ValueError(
            f"{match.name}: cannot adapt the student feature of shape "
            f"{student_shape} to the teacher feature of shape {teacher_shape}. "
            "Automatic adapters take features of the same rank: vectors (batch, "
            "units), sequences (batch, positions, dim) with the same positions, "
            "and channels-last feature maps (batch, height, width, channels); "
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


def _same_known_sizes(sizes, other_sizes):
    """Whether two static shapes of the same rank agree wherever both sizes are known."""
    return all(size is None or other is None or size == other for size, other in zip(sizes, other_sizes))


def feature_terms(matches, adapters, batch, student_features, student_logits, positions, training):
    """The value of each feature match's term, in the order of `matches`: float32 scalars.

    A feature whose leading axes are the positions of per-position logits
    (hidden states `(batch, tokens, dim)` beside logits `(batch, tokens,
    classes)`), compared by a loss with `supports_positions`, gives one
    value per position, averaged over the valid positions as the logit terms
    are (`keras_kd.positions.mean_over_positions`: padding, per-position
    sample weights and masks leave positions out). Any other term is one
    value per example, averaged with the per-example sample weights; it
    cannot leave out positions, and raises when some are masked.

    Args:
        matches: The Distiller's `FeatureMatch`es.
        adapters: Each match's adapter (`make_adapters`), or None.
        batch: The step's batch: each match's teacher feature
            (`batch.teacher_features`) and the `batch.sample_weight`.
        student_features: Each match's student feature, before its adapter.
        student_logits: The student's logits `(batch, ..., classes)`.
        positions: Their `keras_kd.positions.Positions`.
        training: Whether the adapters run in training mode.

    Raises:
        ValueError: for a per-example term when some positions are masked.
    """
    values = []
    features = zip(matches, adapters, batch.teacher_features, student_features)
    for match, adapter, teacher_feature, student_feature in features:
        if adapter is not None:
            student_feature = adapter(student_feature, training=training)
        if match.loss.supports_positions and _has_positions_of(teacher_feature, student_logits):
            per_position = match.loss.per_position(teacher_feature, student_feature)
            values.append(kd_positions.mean_over_positions(per_position, positions))
            continue
        example_weights = kd_positions.per_example_weights(
            positions,
            batch.sample_weight,
            term=f"The feature match {match.name!r}",
            why=_why_per_example(match, teacher_feature, student_logits),
        )
        values.append(kd_positions.weighted_mean(match.loss(teacher_feature, student_feature), example_weights))
    return values


def _has_positions_of(feature, logits):
    """Whether `feature` is `(batch, *positions, dim)` for logits `(batch, *positions, classes)` with a positions axis."""
    positions_shape = tuple(logits.shape[:-1])
    return (
        len(positions_shape) > 1
        and len(feature.shape) == len(logits.shape)
        and _same_known_sizes(tuple(feature.shape[:-1]), positions_shape)
    )


def _why_per_example(match, feature, logits):
    if match.loss.supports_positions:
        return (
            f"compares whole examples: its teacher feature {tuple(feature.shape)} does not have the "
            f"logits' positions {tuple(logits.shape[:-1])} as its leading axes"
        )
    return (
        f"compares whole examples: its loss {match.loss.name!r} ({type(match.loss).__name__}) has no per-position form"
    )
