"""The serializable losses between features, and `get_feature_loss`, which resolves one."""

import keras

from keras_kd import validation
from keras_kd.losses._base import FeatureLoss, check_non_negative, deserialized
from keras_kd.losses._features import attention_transfer, cosine_feature_loss, hint_mse
from keras_kd.losses._relations import pkt, rkd_angle, rkd_distance


@keras.saving.register_keras_serializable(package="keras_kd")
class HintMSE(FeatureLoss):
    """FitNets hint loss (Romero et al., ICLR 2015); see `hint_mse`.

    Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin
    Deep Nets", ICLR 2015. String names: `"mse"`, `"hint"`. Compares per
    position too (`supports_positions`): the mean squared error over each
    position's last axis.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import HintMSE

    assert float(HintMSE()(np.zeros((1, 3)), np.full((1, 3), 2.0))[0]) == 4.0
    ```
    """

    default_name = "mse"
    supports_positions = True

    def call(self, teacher_feature, student_feature):
        return hint_mse(teacher_feature, student_feature)

    def call_per_position(self, teacher_feature, student_feature):
        return hint_mse(teacher_feature, student_feature, per_position=True)


@keras.saving.register_keras_serializable(package="keras_kd")
class AttentionTransfer(FeatureLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017); see `attention_transfer`.

    Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.
    String name: `"attention"`. Only the spatial sizes need to match; the
    channel counts may differ (the paper uses no adapter). The Distiller's
    adapter, declared through `requires_matching_shapes`, also maps the
    channels, which is harmless but adds a learned projection.

    Args:
        p: Exponent of the attention map, >= 1 (p < 1 has an infinite
            gradient at the zero activations ReLUs produce). The paper uses 2.
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import AttentionTransfer

    feature = np.ones((2, 4, 4, 3), "float32")
    assert tuple(AttentionTransfer(p=2)(feature, feature).shape) == (2,)
    ```
    """

    default_name = "attention"

    def __init__(self, p=2.0, name=None):
        super().__init__(name)
        self.p = validation.check_real_number("p", p, schedulable=False)
        if self.p < 1:
            raise ValueError(f"`p` of AttentionTransfer must be >= 1 (the paper uses 2); got {p!r}.")

    def call(self, teacher_feature, student_feature):
        return attention_transfer(teacher_feature, student_feature, p=self.p)

    def get_config(self):
        return {**super().get_config(), "p": self.p}


@keras.saving.register_keras_serializable(package="keras_kd")
class CosineFeatureLoss(FeatureLoss):
    """`1 - cos(teacher, student)` of flattened features; see `cosine_feature_loss`.

    Cosine matching as in, e.g., Chen et al., "Improved Feature Distillation
    via Projector Ensemble", NeurIPS 2022. String name: `"cosine"`. Compares
    per position too (`supports_positions`): `1 - cos` of each position's
    vector, e.g. per token of hidden states `(batch, tokens, dim)`.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import CosineFeatureLoss

    loss = CosineFeatureLoss()(np.array([[1.0, 1.0]]), np.array([[2.0, 2.0]]))
    assert bool(loss[0] < 1e-6)
    ```
    """

    default_name = "cosine"
    supports_positions = True

    def call(self, teacher_feature, student_feature):
        return cosine_feature_loss(teacher_feature, student_feature)

    def call_per_position(self, teacher_feature, student_feature):
        return cosine_feature_loss(teacher_feature, student_feature, per_position=True)


@keras.saving.register_keras_serializable(package="keras_kd")
class RelationalKD(FeatureLoss):
    """Relational KD (Park et al., CVPR 2019): distance and angle terms.

    Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019.
    `distance_weight * rkd_distance + angle_weight * rkd_angle`, with the
    paper's weights 25 and 50 (for the code's averaging; see `rkd_distance`).
    Batch-level; string name `"rkd"`; features of any sizes.

    Args:
        distance_weight: Weight of RKD-D, >= 0.
        angle_weight: Weight of RKD-A, >= 0 (0 skips its n^3 computation).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import RelationalKD

    teacher = np.random.default_rng(0).normal(size=(4, 8))
    student = np.random.default_rng(1).normal(size=(4, 3))
    assert tuple(RelationalKD()(teacher, student).shape) == (4,)
    ```
    """

    default_name = "rkd"
    requires_matching_shapes = False

    def __init__(self, distance_weight=25.0, angle_weight=50.0, name=None):
        super().__init__(name)
        self.distance_weight = check_non_negative("distance_weight", distance_weight)
        self.angle_weight = check_non_negative("angle_weight", angle_weight)

    def call(self, teacher_feature, student_feature):
        loss = self.distance_weight * rkd_distance(teacher_feature, student_feature)
        if self.angle_weight:
            loss = loss + self.angle_weight * rkd_angle(teacher_feature, student_feature)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "distance_weight": self.distance_weight,
            "angle_weight": self.angle_weight,
        }


@keras.saving.register_keras_serializable(package="keras_kd")
class ProbabilisticKT(FeatureLoss):
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018); see `pkt`.

    Passalis & Tefas, "Learning Deep Representations with Probabilistic
    Knowledge Transfer", ECCV 2018. Batch-level; string name `"pkt"`;
    features of any sizes.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import ProbabilisticKT

    teacher = np.random.default_rng(0).normal(size=(4, 8))
    assert tuple(ProbabilisticKT()(teacher, teacher[:, :3]).shape) == (4,)
    ```
    """

    default_name = "pkt"
    requires_matching_shapes = False

    def call(self, teacher_feature, student_feature):
        return pkt(teacher_feature, student_feature)


_FEATURE_LOSS_STRINGS = {
    "mse": HintMSE,
    "hint": HintMSE,
    "attention": AttentionTransfer,
    "cosine": CosineFeatureLoss,
    "rkd": RelationalKD,
    "pkt": ProbabilisticKT,
}


def get_feature_loss(identifier):
    """Returns a FeatureLoss from an instance, a config dict or a string.

    Args:
        identifier: A `FeatureLoss` instance, a dict from
            `keras.saving.serialize_keras_object`, or one of the strings
            `"mse"` (alias `"hint"`: `HintMSE`), `"attention"`
            (`AttentionTransfer`), `"cosine"` (`CosineFeatureLoss`), `"rkd"`
            (`RelationalKD`), `"pkt"` (`ProbabilisticKT`), each with its
            default hyperparameters.

    Returns:
        A `FeatureLoss`.

    Raises:
        ValueError: for an unknown string, naming it and the valid strings.
        TypeError: for anything else.

    Example:

    ```python
    from keras_kd.losses import get_feature_loss

    assert get_feature_loss("hint").name == 'mse'
    ```
    """
    if isinstance(identifier, str):
        if identifier not in _FEATURE_LOSS_STRINGS:
            raise ValueError(
                f"Unknown feature loss {identifier!r}. Valid strings: "
                f"{sorted(_FEATURE_LOSS_STRINGS)}; or pass a "
                "keras_kd.losses.FeatureLoss instance."
            )
        return _FEATURE_LOSS_STRINGS[identifier]()
    identifier = deserialized(identifier)
    if isinstance(identifier, FeatureLoss):
        return identifier
    raise TypeError(
        f"A feature loss must be one of the strings {sorted(_FEATURE_LOSS_STRINGS)}, "
        "a keras_kd.losses.FeatureLoss instance or its serialized config dict; "
        f"got {identifier!r} of type {type(identifier).__name__}."
    )
