"""The serializable losses between logits, and `get`, which resolves one."""

import numbers

import keras
from keras import ops

from keras_kd.losses._base import DistillationLoss, check_non_negative, deserialized
from keras_kd.losses._decoupled import decoupled_kd
from keras_kd.losses._logits import check_beta, generalized_jsd, reverse_kl, soft_target_kl, total_variation


@keras.saving.register_keras_serializable(package="keras_kd")
class SoftTargetKL(DistillationLoss):
    """Hinton et al. (2015) soft-target loss; see `soft_target_kl`.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    arXiv 2015. The Distiller's default distillation loss. The temperature
    comes from the Distiller (a constant or a schedule); `step` is ignored.

    Args:
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import SoftTargetKL

    logits = np.array([[2.0, 0.0, -1.0]], "float32")
    loss = SoftTargetKL(standardize=True)(logits, 2 * logits + 1, 4.0)
    assert bool(loss[0] < 1e-4)  # float32 rounding only: the standardized logits agree
    ```
    """

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return soft_target_kl(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class DecoupledKD(DistillationLoss):
    """Decoupled KD (Zhao et al., CVPR 2022) with its linear warm-up; see `decoupled_kd`.

    Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR
    2022. The target class is the teacher's argmax (the paper uses the label;
    see `decoupled_kd`). The whole DKD loss is multiplied by
    `min(step / warmup_steps, 1)` during training, and by 1 when `step` is
    `None` (evaluation) or `warmup_steps` is 0.

    Paper vs code: the reference code (mdistiller) warms up over epochs (20
    on CIFAR-100) counted from 1, so its first epoch already has weight
    1/20; here the warm-up counts optimizer steps from 0, so the very first
    step has weight 0. mdistiller also uses its own temperature (4 on
    CIFAR-100); here the Distiller's temperature is used.

    Args:
        alpha: Weight of the target-class term TCKD, >= 0.
        beta: Weight of the non-target term NCKD, >= 0 (8 is mdistiller's
            CIFAR-100 value).
        warmup_steps: Steps of linear warm-up, integer >= 0 (0: none).
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import keras_kd

    teacher = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(8,))
    distiller = keras_kd.Distiller(
        teacher, student, temperature=4.0,
        distillation_loss=keras_kd.losses.DecoupledKD(beta=8.0, warmup_steps=2000))
    ```
    """

    def __init__(self, alpha=1.0, beta=8.0, warmup_steps=0, standardize=False, name=None):
        super().__init__(standardize=standardize, name=name)
        self.alpha = check_non_negative("alpha", alpha)
        self.beta = check_non_negative("beta", beta)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0 (0 turns the warm-up off); got {warmup_steps!r}.")
        self.warmup_steps = int(warmup_steps)

    def warmup_weight(self, step):
        """`min(step / warmup_steps, 1)`, or 1.0 without a step or a warm-up."""
        if step is None or self.warmup_steps == 0:
            return 1.0
        return ops.minimum(ops.cast(step, "float32") / float(self.warmup_steps), 1.0)

    def call(self, teacher_logits, student_logits, temperature, step=None):
        loss = decoupled_kd(teacher_logits, student_logits, temperature, alpha=self.alpha, beta=self.beta)
        return loss * self.warmup_weight(step)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "warmup_steps": self.warmup_steps,
        }


@keras.saving.register_keras_serializable(package="keras_kd")
class ReverseKL(DistillationLoss):
    """Reverse KL, `KL(student || teacher) * T ** 2`; see `reverse_kl`.

    Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models",
    ICLR 2024. The temperature comes from the Distiller; `step` is ignored.

    Args:
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd import losses

    loss = losses.ReverseKL(name="rkl")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    logits = np.array([[2.0, 0.0, -1.0]], "float32")
    assert restored.name == "rkl" and float(restored(logits, logits, 2.0)[0]) == 0.0
    ```
    """

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return reverse_kl(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class GeneralizedJSD(DistillationLoss):
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al., ICLR 2024); see `generalized_jsd`.

    Agarwal et al., "On-Policy Distillation of Language Models: Learning from
    Self-Generated Mistakes", ICLR 2024. `beta` is the teacher's weight in
    the mixture, as in TRL: 0 gives the forward KL (`SoftTargetKL`), 1 the
    reverse KL (`ReverseKL`), 0.5 (the default, as TRL's) the symmetric JSD.

    Args:
        beta: Real number in [0, 1].
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Raises:
        ValueError: for a `beta` outside [0, 1].

    Example:

    ```python
    import keras
    import numpy as np
    import keras_kd

    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
    distiller = keras_kd.Distiller(
        teacher, student, temperature=1.0, alpha=0.5,
        distillation_loss=keras_kd.losses.GeneralizedJSD(beta=0.9))
    distiller.compile(optimizer="adam")
    distiller.fit(np.ones((4, 8), "float32"), np.zeros(4, "int32"), epochs=1, verbose=0)
    ```
    """

    def __init__(self, beta=0.5, standardize=False, name=None):
        super().__init__(standardize=standardize, name=name)
        self.beta = check_beta(beta)

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return generalized_jsd(teacher_logits, student_logits, temperature, beta=self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_kd")
class TotalVariation(DistillationLoss):
    """Total variation distance, in [0, 1] and not scaled by `T ** 2`; see `total_variation`.

    Wen et al., "f-Divergence Minimization for Sequence-Level Knowledge
    Distillation", ACL 2023. The temperature comes from the Distiller;
    `step` is ignored.

    Args:
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd import losses

    teacher = np.array([[20.0, 0.0]], "float32")
    assert abs(float(losses.TotalVariation()(teacher, -teacher, 1.0)[0]) - 1.0) < 1e-6
    ```
    """

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return total_variation(teacher_logits, student_logits, temperature)


def get(identifier):
    """Returns a DistillationLoss from an instance, a config dict or None.

    Args:
        identifier: `None` (gives `SoftTargetKL()`), a `DistillationLoss`
            instance, or a dict from `keras.saving.serialize_keras_object`.

    Returns:
        A `DistillationLoss`.

    Raises:
        TypeError: for anything else, naming the value and the valid choices.

    Example:

    ```python
    from keras_kd.losses import get

    assert get(None).name == 'soft_target_kl'
    ```
    """
    if identifier is None:
        return SoftTargetKL()
    identifier = deserialized(identifier)
    if isinstance(identifier, DistillationLoss):
        return identifier
    raise TypeError(
        "distillation_loss must be None (for SoftTargetKL()), a "
        "keras_kd.losses.DistillationLoss instance (e.g. "
        "keras_kd.losses.SoftTargetKL() or keras_kd.losses.DecoupledKD()) or "
        f"its serialized config dict; got {identifier!r} of type "
        f"{type(identifier).__name__}."
    )
