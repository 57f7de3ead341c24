"""keras_kd.students.from_teacher: shallower students that copy their teacher's kept layers exactly."""

import warnings

import keras
import numpy as np
import pytest

from hub_support import bert_classifier, gemma3_lm, gpt2_lm, llama3_lm, qwen3_lm
from keras_kd import students

VOCABULARY_SIZE = 32
HIDDEN_DIM = 8
SEQUENCE_LENGTH = 5

# (builder, the keyword its transformer layers take the padding mask by)
HUB_FAMILIES = {
    "gpt2": (gpt2_lm, "decoder_padding_mask"),
    "llama3": (llama3_lm, "decoder_padding_mask"),
    "qwen3": (qwen3_lm, "decoder_padding_mask"),
    "gemma3": (gemma3_lm, "padding_mask"),
    "bert": (bert_classifier, "padding_mask"),
}


def hub_inputs(backbone, rng):
    token_ids = rng.integers(1, VOCABULARY_SIZE, size=(2, SEQUENCE_LENGTH)).astype("int32")
    padding_mask = np.ones((2, SEQUENCE_LENGTH), bool)
    padding_mask[1, -2:] = False
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = np.zeros((2, SEQUENCE_LENGTH), "int32")
    return inputs


def embeddings_output(backbone, inputs):
    """What the backbone's embeddings give its first transformer layer."""
    first_layer_input = keras.tree.flatten(backbone.transformer_layers[0].input)[0]
    return keras.ops.convert_to_numpy(keras.Model(backbone.input, first_layer_input)(inputs))


def transformer_layer_weights(backbone):
    return {id(weight) for layer in backbone.transformer_layers for weight in layer.weights}


@pytest.mark.parametrize("family", sorted(HUB_FAMILIES))
def test_a_hub_student_at_half_depth_copies_embeddings_kept_layers_and_head(family):
    build, mask_keyword = HUB_FAMILIES[family]
    teacher = build(4, HIDDEN_DIM, "teacher", VOCABULARY_SIZE)
    student = students.from_teacher(teacher, num_layers=2)

    assert type(student) is type(teacher)
    assert student.name == "teacher_student"
    assert len(student.backbone.transformer_layers) == 2
    assert student.backbone.get_config()["num_layers"] == 2
    rng = np.random.default_rng(0)
    inputs = hub_inputs(teacher.backbone, rng)
    np.testing.assert_array_equal(
        embeddings_output(student.backbone, inputs), embeddings_output(teacher.backbone, inputs)
    )

    hidden = rng.normal(size=(2, SEQUENCE_LENGTH, HIDDEN_DIM)).astype("float32")
    mask = {mask_keyword: inputs["padding_mask"]}
    for student_layer, teacher_index in zip(student.backbone.transformer_layers, [0, 2]):
        teacher_layer = teacher.backbone.transformer_layers[teacher_index]
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(student_layer(hidden, **mask)),
            keras.ops.convert_to_numpy(teacher_layer(hidden, **mask)),
        )

    # Everything outside the transformer layers (embeddings, final norm, head) is the teacher's.
    teacher_rest = {
        weight.path: weight
        for weight in teacher.weights
        if id(weight) not in transformer_layer_weights(teacher.backbone)
    }
    student_rest = [
        weight for weight in student.weights if id(weight) not in transformer_layer_weights(student.backbone)
    ]
    assert sorted(weight.path for weight in student_rest) == sorted(teacher_rest)
    for weight in student_rest:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(weight), keras.ops.convert_to_numpy(teacher_rest[weight.path])
        )
    assert student.output.shape == teacher.output.shape
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(student(inputs))))


def test_a_hub_backbone_student_keeps_the_chosen_layers():
    teacher = llama3_lm(4, HIDDEN_DIM, "teacher", VOCABULARY_SIZE).backbone
    student = students.from_teacher(teacher, keep_layers=np.array([1, 3]), name="small")

    assert student.name == "small"
    hidden = np.random.default_rng(1).normal(size=(1, SEQUENCE_LENGTH, HIDDEN_DIM)).astype("float32")
    for student_layer, teacher_index in zip(student.transformer_layers, [1, 3]):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(student_layer(hidden)),
            keras.ops.convert_to_numpy(teacher.transformer_layers[teacher_index](hidden)),
        )


def test_a_hub_task_student_keeps_the_teachers_preprocessor():
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)
    teacher = bert_classifier(2, HIDDEN_DIM, "teacher", VOCABULARY_SIZE)
    teacher = keras_hub.models.BertTextClassifier(
        backbone=teacher.backbone, num_classes=3, preprocessor=preprocessor, dropout=0.0
    )
    student = students.from_teacher(teacher, num_layers=1)

    assert student.preprocessor is preprocessor
    assert keras.ops.convert_to_numpy(student.predict(["a b"], verbose=0)).shape == (1, 3)


def gemma3_backbone_with_sliding_windows(num_layers):
    import keras_hub

    return keras_hub.models.Gemma3Backbone(
        vocabulary_size=VOCABULARY_SIZE,
        image_size=None,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=2 * HIDDEN_DIM,
        head_dim=HIDDEN_DIM // 2,
        use_sliding_window_attention=True,
        sliding_window_size=4,
        vision_encoder=None,
    )


def test_a_gemma3_layer_that_changes_attention_kind_is_named_in_a_warning():
    teacher = gemma3_backbone_with_sliding_windows(6)  # layers 0-4 local, layer 5 global

    with pytest.warns(UserWarning, match=r"decoder_block_5 -> decoder_block_1 \(.*use_sliding_window_attention"):
        students.from_teacher(teacher, keep_layers=[0, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        student = students.from_teacher(teacher, num_layers=3)  # layers 0, 2, 4: all local, as in the student
    assert [layer.use_sliding_window_attention for layer in student.transformer_layers] == [True] * 3


# --- Keras Sequential and functional models. ---------------------------------


def test_a_sequential_student_computes_the_teacher_with_dropped_layers_skipped():
    teacher = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="relu")]
        + [keras.layers.Dense(6, activation="relu") for _ in range(4)]
        + [keras.layers.Dense(3)],
        name="mlp",
    )
    student = students.from_teacher(teacher, num_layers=2)  # keeps the 1st and 3rd of the four 6-to-6 layers

    assert isinstance(student, keras.Sequential)
    assert student.name == "mlp_student"
    assert [layer.name for layer in student.layers] == [teacher.layers[i].name for i in (0, 1, 3, 5)]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    reference = x
    for index in (0, 1, 3, 5):
        reference = teacher.layers[index](reference)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(student(x)), keras.ops.convert_to_numpy(reference), rtol=1e-6, atol=1e-6
    )


def small_cnn():
    inputs = keras.Input((6, 6, 3))
    widen = keras.layers.Conv2D(4, 3, padding="same", name="widen")(inputs)
    normalized = keras.layers.BatchNormalization(name="norm")(widen)
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(normalized)
    second = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(first)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(second)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(pooled), name="cnn")


def test_a_functional_student_computes_the_teacher_with_dropped_layers_skipped():
    teacher = small_cnn()
    rng = np.random.default_rng(0)
    norm = teacher.get_layer("norm")
    norm.moving_mean.assign(rng.normal(size=4).astype("float32"))
    norm.moving_variance.assign(rng.uniform(0.5, 2.0, size=4).astype("float32"))
    student = students.from_teacher(teacher, keep_layers=[1])  # drops conv_a, keeps conv_b

    assert isinstance(student.get_layer("conv_a"), keras.layers.Identity)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(student.get_layer("norm").moving_mean), keras.ops.convert_to_numpy(norm.moving_mean)
    )
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    reference = x
    for layer_name in ("widen", "norm", "conv_b", "pool", "logits"):
        reference = teacher.get_layer(layer_name)(reference)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(student(x)), keras.ops.convert_to_numpy(reference), rtol=1e-5, atol=1e-6
    )
    student_weights = {weight.path for weight in student.weights}
    assert not any(path.startswith("conv_a/") for path in student_weights)


def test_layers_in_a_residual_branch_or_called_twice_are_not_droppable():
    inputs = keras.Input((4,))
    branch = keras.layers.Dense(4, name="branch")(inputs)
    summed = keras.layers.Add(name="sum")([inputs, branch])
    shared = keras.layers.Dense(4, name="shared")
    twice = shared(shared(summed))
    outputs = keras.layers.Dense(4, name="last")(twice)
    teacher = keras.Model(inputs, outputs)

    with pytest.raises(ValueError, match=r"(?s)only 1 droppable layers \(last;.*branch: its input is also read by sum"):
        students.from_teacher(teacher, num_layers=1)
    with pytest.raises(ValueError, match="shared: it is called 2 times"):
        students.from_teacher(teacher, keep_layers=[0])


def test_a_model_with_no_droppable_layer_is_refused_with_its_layers_listed():
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="wide"), keras.layers.Dense(2)])

    with pytest.raises(ValueError, match=r"no layer that can be dropped.*wide: its output shape \(None, 8\)"):
        students.from_teacher(teacher, num_layers=1)


# --- Bad input. ---------------------------------------------------------------


def mlp_with_four_droppable_layers():
    return keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(4) for _ in range(4)] + [keras.layers.Dense(2)])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({}, ValueError, "exactly one of `num_layers`"),
        ({"num_layers": 2, "keep_layers": [0]}, ValueError, "exactly one of `num_layers`"),
        ({"num_layers": 0}, ValueError, r"num_layers=0 is out of range.*from 1 to 3"),
        ({"num_layers": 4}, ValueError, r"num_layers=4 is out of range.*would not make it smaller"),
        ({"num_layers": 2.0}, TypeError, "`num_layers` must be an int"),
        ({"num_layers": True}, TypeError, "`num_layers` must be an int"),
        ({"keep_layers": []}, ValueError, r"keep_layers=\[\] is out of range"),
        ({"keep_layers": [0, 4]}, ValueError, r"holds \[4\], out of range.*indexed 0 to 3"),
        ({"keep_layers": [-1]}, ValueError, r"holds \[-1\], out of range"),
        ({"keep_layers": [1, 1]}, ValueError, r"repeats \[1\]"),
        ({"keep_layers": [2, 0]}, ValueError, r"not in increasing order.*\[0, 2\]"),
        ({"keep_layers": [0, 1, 2, 3]}, ValueError, "would not make it smaller"),
        ({"keep_layers": "01"}, TypeError, "must be a list of ints"),
        ({"keep_layers": [0.0]}, TypeError, "must hold ints"),
    ],
)
def test_bad_layer_requests_are_refused(arguments, error, message):
    with pytest.raises(error, match=message):
        students.from_teacher(mlp_with_four_droppable_layers(), **arguments)


def test_a_subclassed_model_or_a_non_model_is_refused():
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, inputs):
            return self.dense(inputs)

    with pytest.raises(TypeError, match="subclassed model \\(Custom\\).*Sequential or functional"):
        students.from_teacher(Custom(), num_layers=1)
    with pytest.raises(TypeError, match="must be a keras.Model.*got 'model' of type str"):
        students.from_teacher("model", num_layers=1)


def test_a_hub_family_it_cannot_shrink_is_named_with_the_supported_ones():
    import keras_hub

    teacher = keras_hub.models.DistilBertBackbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_heads=2,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=2 * HIDDEN_DIM,
        max_sequence_length=SEQUENCE_LENGTH,
    )
    with pytest.raises(TypeError, match=r"DistilBertBackbone, a family .* cannot shrink.*GPT-2, Llama.*BERT"):
        students.from_teacher(teacher, num_layers=1)


def test_a_student_trains_beside_its_teacher_without_changing_it():
    import keras_kd

    teacher = mlp_with_four_droppable_layers()
    student = students.from_teacher(teacher, num_layers=2)
    teacher_before = [keras.ops.convert_to_numpy(weight) for weight in teacher.weights]
    student_before = [keras.ops.convert_to_numpy(weight) for weight in student.weights]
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 4), dtype="float32"), rng.integers(0, 2, 8)

    distiller = keras_kd.Distiller(teacher, student, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1)).fit(x, y, epochs=1, verbose=0)

    for weight, before in zip(teacher.weights, teacher_before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), before)
    assert any(
        not np.array_equal(keras.ops.convert_to_numpy(weight), before)
        for weight, before in zip(student.weights, student_before)
    )
