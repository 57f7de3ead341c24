"""Losses between one teacher feature and one student feature, per example or per position.

`hint_mse` (FitNets), `attention_transfer` (with its `attention_map`) and
`cosine_feature_loss`. Each compares example i's teacher feature with
example i's student feature; the relational losses, which compare the
batch's internal structure, are in `_relations`.
"""

from keras import ops

from keras_kd import _casting
from keras_kd.losses._numerics import divide_by_max_abs, flatten_per_example, l2_normalize


def _check_same_feature_shape(loss_name, teacher_feature, student_feature, axes=None):
    """Raises if the static shapes differ (on `axes`, default: all but batch)."""
    teacher_shape = tuple(teacher_feature.shape)
    student_shape = tuple(student_feature.shape)
    if axes is None:
        compared = (teacher_shape[1:], student_shape[1:])
        what = "shape"
    else:
        compared = (teacher_shape[axes], student_shape[axes])
        what = "spatial shape"
    if len(compared[0]) != len(compared[1]) or any(
        t is not None and s is not None and t != s for t, s in zip(*compared)
    ):
        raise ValueError(
            f"{loss_name} needs teacher and student features of the same {what}; "
            f"got teacher {teacher_shape} and student {student_shape}. Give the "
            "FeatureMatch an adapter (adapter='auto' projects the student's "
            "feature to the teacher's shape) or match other layers."
        )


def hint_mse(teacher_feature, student_feature, per_position=False):
    """FitNets hint loss: mean squared error over all feature dimensions.

    Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin
    Deep Nets", ICLR 2015. The student's feature (after a regressor, here the
    FeatureMatch's adapter) is pulled towards the teacher's.

    Paper vs code: the paper writes `1/2 * ||teacher - student||^2` (a sum)
    and trains the hint in a separate first stage; common code (e.g.
    RepDistiller's `HintLoss`, `nn.MSELoss`) and this function take the mean
    over elements and add it to the KD loss in one stage. Scale the weight
    by `0.5 * feature_size` to recover the paper's sum.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of the same shape.
        per_position: If True, the mean over the last axis only: one value
            per position, e.g. per token of `(batch, tokens, dim)` hidden
            states. Their mean over all positions is the per-example value's
            mean over the batch.

    Returns:
        Float32 tensor of shape `(batch,)`, or the feature's shape without
        its last axis with `per_position=True`.

    Raises:
        ValueError: if the static shapes differ.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import hint_mse

    assert float(hint_mse(np.zeros((1, 2, 2)), np.ones((1, 2, 2)))[0]) == 1.0
    assert tuple(hint_mse(np.zeros((1, 2, 2)), np.ones((1, 2, 2)), per_position=True).shape) == (1, 2)
    ```
    """
    teacher_feature, student_feature = _casting.floats32(teacher_feature, student_feature)
    _check_same_feature_shape("hint_mse", teacher_feature, student_feature)
    if not per_position:
        teacher_feature, student_feature = flatten_per_example(teacher_feature), flatten_per_example(student_feature)
    return ops.mean(ops.square(student_feature - teacher_feature), axis=-1)


def attention_map(feature, p=2.0):
    """Spatial attention map of a channels-last feature, flattened and L2-normalized.

    Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
    Performance of Convolutional Neural Networks via Attention Transfer",
    ICLR 2017: `Q = vec(mean_c |f_c| ** p)`, then `Q / ||Q||_2`.

    Paper vs code: the paper sums over channels; the authors' code averages
    (the same after normalization). The feature is rescaled per example
    before the power (the map is scale-invariant), so large activations do
    not overflow float32.

    Args:
        feature: Tensor of shape `(batch, height, width, channels)` (or any
            `(batch, ..., channels)`, e.g. `(batch, tokens, channels)`).
        p: Exponent, >= 1.

    Returns:
        Float32 tensor of shape `(batch, height * width)`, rows of unit norm
        (or zero for an all-zero feature).

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import attention_map

    assert tuple(attention_map(np.ones((2, 4, 4, 3), "float32")).shape) == (2, 16)
    ```
    """
    feature = ops.cast(feature, "float32")
    if len(feature.shape) < 3:
        raise ValueError(
            "Attention transfer needs feature maps with spatial axes, e.g. "
            f"(batch, height, width, channels); got shape {tuple(feature.shape)}. "
            "For vectors use 'mse' or 'cosine'."
        )
    feature = divide_by_max_abs(feature, axis=tuple(range(1, len(feature.shape))))
    energy = ops.mean(ops.power(ops.abs(feature), p), axis=-1)
    return l2_normalize(flatten_per_example(energy))


def attention_transfer(teacher_feature, student_feature, p=2.0):
    """Attention transfer: squared distance between normalized attention maps.

    Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017;
    see `attention_map`. Channel counts may differ; spatial sizes must match.

    Paper vs code: the paper's loss is the (unsquared) p-norm of the
    difference of the normalized maps, with weight beta/2 and beta = 1000;
    the authors' code, followed here, takes the *mean of the squared*
    difference (`(at(x) - at(y)).pow(2).mean()`). This function returns the
    mean over spatial positions per example, so the batch mean equals the
    code's value; use a FeatureMatch weight of 500 (= beta / 2) to match it.

    Args:
        teacher_feature: Tensor `(batch, height, width, channels_t)`.
        student_feature: Tensor `(batch, height, width, channels_s)`.
        p: Exponent of the attention map, >= 1 (the paper uses 2).

    Returns:
        Float32 tensor of shape `(batch,)`.

    Raises:
        ValueError: if the spatial shapes differ, or a feature has no spatial axes.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import attention_transfer

    feature = np.random.default_rng(0).normal(size=(2, 4, 4, 3))
    assert bool(attention_transfer(feature, 3 * feature)[0] < 1e-6)
    ```
    """
    teacher_feature, student_feature = _casting.floats32(teacher_feature, student_feature)
    _check_same_feature_shape("attention_transfer", teacher_feature, student_feature, axes=slice(1, -1))
    teacher_map = attention_map(teacher_feature, p)
    student_map = attention_map(student_feature, p)
    return ops.mean(ops.square(student_map - teacher_map), axis=-1)


def cosine_feature_loss(teacher_feature, student_feature, per_position=False):
    """One minus the cosine similarity of the flattened features, per example (or per position).

    Cosine (direction) matching has no single source paper; it is, e.g., the
    direction-alignment feature loss of Chen, Wang, Liu, Xu, de Hoog & Huang,
    "Improved Feature Distillation via Projector Ensemble", NeurIPS 2022,
    written there as half the squared distance between L2-normalized
    features, which equals `1 - cos`. It ignores the features' magnitude.
    An all-zero feature has cosine 0 with everything (loss 1), as with
    `torch.nn.functional.cosine_similarity`.

    With `per_position=True` each position's vector (the last axis) is
    compared on its own: per token for hidden states `(batch, tokens, dim)`,
    as DistilBERT's cosine embedding loss between hidden states does (Sanh,
    Debut, Chaumond & Wolf, "DistilBERT, a distilled version of BERT",
    2019).

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of the same shape.
        per_position: If True, one value per position, over the last axis
            only.

    Returns:
        Float32 tensor of shape `(batch,)`, or the feature's shape without
        its last axis with `per_position=True`; values in [0, 2].

    Raises:
        ValueError: if the static shapes differ.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import cosine_feature_loss

    assert float(cosine_feature_loss(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))[0]) == 1.0
    ```
    """
    teacher_feature, student_feature = _casting.floats32(teacher_feature, student_feature)
    _check_same_feature_shape("cosine_feature_loss", teacher_feature, student_feature)
    if not per_position:
        teacher_feature, student_feature = flatten_per_example(teacher_feature), flatten_per_example(student_feature)
    return 1.0 - ops.sum(l2_normalize(teacher_feature) * l2_normalize(student_feature), axis=-1)
