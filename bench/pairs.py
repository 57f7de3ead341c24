"""The teacher/student pairs the benchmark times, in Keras.

A pair names its models' builders, the layers that feature matching aligns
(of equal shapes, so that core Keras's `FeatureDistillation`, which has no
adapters, can match them too), the data sizes of a full and a smoke run, and
how its configurations are timed. Keras is imported only when a model is
built, so that the pure-PyTorch loop runs without it.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Pair:
    """A teacher/student pair and the sizes it is timed at.

    Attributes:
        name: Key of the pair in `PAIRS` (and on the command line).
        title: What the pair is, for the report.
        build_teacher: Callable of `smoke` returning the teacher.
        build_student: Callable of `smoke` returning the student.
        teacher_feature: Teacher layer that feature matching reads (None:
            the pair is not timed with features).
        student_feature: Student layer of the same output shape.
        input_shape: Shape of one input, for `smoke=False` and `smoke=True`.
        images: Inputs per timed epoch, for `smoke=False` and `smoke=True`.
        batch_size: Batch size, for `smoke=False` and `smoke=True`.
        configs: The configurations timed on this pair (None: all).
        interleaved: Whether all its configurations are timed in one process
            per backend, one epoch of each in turn (see
            `bench.workload.run_interleaved`), rather than one process each.
        repeats: Timed epochs per configuration unless `--repeats` says.
        epochs_per_fit: Epochs of each timed `fit` call, timed one by one
            inside it (see `bench.workload`); 1 times the whole call, its
            per-call set-up included.
    """

    name: str
    title: str
    build_teacher: object
    build_student: object
    teacher_feature: str
    student_feature: str
    input_shape: dict
    images: dict
    batch_size: dict
    configs: tuple = None
    interleaved: bool = False
    repeats: int = 2
    epochs_per_fit: int = 1


def _small_teacher(smoke):
    from keras_kd import models

    if smoke:
        return models.small_cnn_teacher(input_shape=(16, 16, 3), filters=(8, 8, 16, 16))
    return models.small_cnn_teacher()


def _small_student(smoke):
    from keras_kd import models

    # The Dense layer as wide as the teacher's pooled features (512), so the
    # two can be matched without an adapter; otherwise seed 003's student.
    if smoke:
        return models.small_cnn_student(input_shape=(16, 16, 3), filters=(4, 4, 8, 8), dense_units=16)
    return models.small_cnn_student(dense_units=512)


def _resnet_teacher(smoke):
    from keras_kd import models

    return models.resnet50(input_shape=(32, 32, 3), num_classes=10)


def _resnet_student(smoke):
    from keras_kd import models

    return models.resnet18(input_shape=(32, 32, 3), num_classes=10)


def _mlp_teacher(smoke):
    from keras_kd import models

    hidden_units = (64, 64) if smoke else (1024, 1024)
    return models.mlp_student(input_shape=(784,), hidden_units=hidden_units, name="mlp_teacher")


def _mlp_student(smoke):
    from keras_kd import models

    return models.mlp_student(input_shape=(784,), hidden_units=(8,) if smoke else (32,))


PAIRS = {
    "small": Pair(
        name="small",
        title="VGG-style CNN teacher (small_cnn_teacher, 4.7M parameters) -> small CNN student "
        "(small_cnn_student with a 512-unit Dense layer)",
        build_teacher=_small_teacher,
        build_student=_small_student,
        teacher_feature="pool",
        student_feature="dense",
        input_shape={False: (32, 32, 3), True: (16, 16, 3)},
        images={False: 1024, True: 64},
        batch_size={False: 128, True: 16},
    ),
    "resnet": Pair(
        name="resnet",
        title="ResNet-50 teacher (keras.applications, ImageNet stem) -> ResNet-18 student (CIFAR stem)",
        build_teacher=_resnet_teacher,
        build_student=_resnet_student,
        teacher_feature="conv3_block4_out",
        student_feature="conv5_block2_out",
        input_shape={False: (32, 32, 3), True: (32, 32, 3)},
        # One step per smoke epoch: the smoke GPU suite builds five
        # configurations of it on the CPU, in bfloat16.
        images={False: 64, True: 8},
        batch_size={False: 32, True: 8},
        # A ResNet-18 epoch costs the 2-core CPU what the small pair's does
        # per image times ~30: the ratios that the targets and the model-size
        # comparison need, no more.
        configs=("student", "teacher_inference", "kd_logits", "kd_cached", "core_logits"),
    ),
    "overhead": Pair(
        name="overhead",
        title="Overhead-bound: MLP teacher 784-1024-1024-10 -> MLP student 784-32-10",
        build_teacher=_mlp_teacher,
        build_student=_mlp_student,
        teacher_feature=None,
        student_feature=None,
        input_shape={False: (784,), True: (784,)},
        images={False: 16384, True: 64},
        batch_size={False: 512, True: 16},
        # A tiny student and a teacher many times its size: what a fast GPU
        # makes of most pairs, where the data path and the per-step overhead
        # of the Distiller decide the speed.
        configs=(
            "student",
            "teacher_inference",
            "kd_logits",
            "kd_cached",
            "core_logits",
            "torch_logits",
            "torch_student",
            "torch_cached",
        ),
        # Epochs this short vary more between processes than the
        # differences measured.
        interleaved=True,
        repeats=3,
        # An epoch is only 32 steps, and TensorFlow's `fit` sets up its data
        # pipeline at each call: the epochs are timed inside a fit, as users
        # train, so that the ratios compare steps, not per-call set-up
        # (timed apart, in `bench.cache_sweep`).
        epochs_per_fit=3,
    ),
}
