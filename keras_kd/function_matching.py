"""Function matching (Beyer et al., CVPR 2022): a Distiller whose teacher and student see one augmented batch."""

import keras

from keras_kd.distiller import Distiller


@keras.saving.register_keras_serializable(package="keras_kd")
class FunctionMatchingDistiller(Distiller):
    """Function matching: a consistent teacher on augmented and mixed inputs.

    Beyer, Zhai, Royer, Markeeva, Anil & Kolesnikov, "Knowledge distillation:
    A good teacher is patient and consistent", CVPR 2022. Inside each train
    step the batch is augmented and/or mixed (mixup) *once*, and both the
    teacher and the student see that same batch, so the student matches the
    teacher's function on inputs well beyond the training images. As in the
    paper it is label-free by default (`alpha=1.0`): `fit(x)` works, and
    labels, if given with `alpha < 1`, are mixed with the inputs' weights.
    Evaluation sees the inputs unchanged.

    The teacher runs at every step (its outputs change with the inputs), so
    a `keras_kd.cache.TeacherCache` refuses this Distiller. Function
    matching pays off with long training: the paper trains for thousands of
    epochs.

    Args:
        teacher: As for `Distiller`; so are `student`, `temperature`,
            `distillation_loss`, `feature_matches` and `name`.
        alpha: As for `Distiller`; defaults to 1.0 (label-free).
        augmentation: A `keras.layers.Layer` of random preprocessing, e.g.
            `keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1)])`,
            or `None`.
        mixup: Beta concentration of mixup; 1.0 (the default) draws the
            mixing weights uniformly; 0 turns mixup off.
        seed: Seed of the mixup draws.

    Raises:
        ValueError: if neither augmentation nor mixup is on, or as
            `Distiller`.

    Example:

    ```python
    import keras
    import numpy as np
    import keras_kd

    teacher = keras_kd.models.mlp_student((8, 8, 1), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8, 8, 1), num_classes=3, hidden_units=(8,))
    x_unlabeled = np.random.default_rng(0).random((32, 8, 8, 1), dtype="float32")

    augment = keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1)])
    distiller = keras_kd.FunctionMatchingDistiller(
        teacher, student, augmentation=augment, mixup=1.0, seed=0)
    distiller.compile(optimizer="adam").fit(x_unlabeled, epochs=2, verbose=0)  # long schedules pay
    ```
    """

    def __init__(self, teacher, student, *, alpha=1.0, augmentation=None, mixup=1.0, seed=None, **kwargs):
        super().__init__(teacher, student, alpha=alpha, augmentation=augmentation, mixup=mixup, seed=seed, **kwargs)
        if not self.transforms_inputs:
            raise ValueError(
                "Function matching needs an `augmentation` layer, a `mixup` "
                "concentration > 0, or both; got augmentation=None and "
                "mixup=0.0. Use keras_kd.Distiller for plain distillation."
            )
