"""What the test_losses_* files share: backend-neutral evaluation, NumPy references, inputs.

The NumPy float64 references are written independently of Keras (ports of
the authors' code where one exists). A reference or case that one test file
alone uses stays in that file; this module holds those several files use.
"""

import functools

import keras
import numpy as np
from keras import ops

from keras_kd import losses

# --------------------------------------------------------------------------
# Evaluating a loss on the current backend
# --------------------------------------------------------------------------


def as_numpy(tensor):
    return ops.convert_to_numpy(tensor)


def jit_compile(fn):
    """`fn` compiled the way the current backend compiles a train step.

    jax: `jax.jit`; tensorflow: `tf.function(jit_compile=True)` (XLA). On
    torch, `fn` runs eagerly: compiling each loss with `torch.compile` would
    dominate these unit tests on a CPU (the Distiller's own tests cover
    compiled torch training).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def compute(fn, *args):
    """`fn(*args)` as NumPy.

    On jax it runs under `jax.jit`, cached per `fn`: eager jax compiles each
    primitive for each new shape, so compiling the whole loss once is
    cheaper. Eager jax is covered by the `*_jitted_equal_eager` tests. Other
    backends run eagerly.
    """
    if keras.backend.backend() == "jax":
        return as_numpy(_jax_jit(fn)(*args))
    return as_numpy(fn(*args))


@functools.cache
def _jax_jit(fn):
    import jax

    return jax.jit(fn)


def values_and_student_gradient(fn, *args):
    """`fn(*args)` and d sum(fn(*args)) / d args[1] (the student), as NumPy."""
    backend = keras.backend.backend()
    args = list(args)
    args[1] = np.asarray(args[1], "float32")
    if backend == "jax":
        gradient, values = _jax_values_and_student_gradient(fn)(*args)
        return np.asarray(values), np.asarray(gradient)
    if backend == "tensorflow":
        import tensorflow as tf

        args[1] = tf.constant(args[1])
        with tf.GradientTape() as tape:
            tape.watch(args[1])
            values = fn(*args)
            total = tf.reduce_sum(values)
        return values.numpy(), tape.gradient(total, args[1]).numpy()
    import torch

    args[1] = torch.tensor(args[1], requires_grad=True)
    values = fn(*args)
    values.sum().backward()
    return values.detach().numpy(), args[1].grad.numpy()


@functools.cache
def _jax_values_and_student_gradient(fn):
    import jax

    def total_and_values(*args):
        values = fn(*args)
        return jax.numpy.sum(values), values

    return jax.jit(jax.grad(total_and_values, argnums=1, has_aux=True))


def tensors(*arrays):
    return [ops.convert_to_tensor(np.asarray(array, "float32")) for array in arrays]


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


# One shape for the random-logit tests (each new shape is a new compile).
LOGITS_SHAPE = (8, 5)


def random_logits(shape, seed, scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype("float32")


# Logits of +-1e4: saturated softmaxes, ties, and a row of equal logits.
EXTREME_TEACHER = np.array([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, 1e4, 1e4], [3.0, 3.0, 3.0, 3.0]], "float32")
EXTREME_STUDENT = np.array([[-1e4, 1e4, 0.0, -5.0], [1e4, -1e4, -1e4, 0.0], [1e4, -1e4, 2.0, 3.0]], "float32")


# --------------------------------------------------------------------------
# NumPy float64 references
# --------------------------------------------------------------------------


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_kl(log_p, log_q):
    """sum p (log p - log q), with 0 log 0 = 0 (as torch's kl_div)."""
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        return np.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)


def numpy_soft_target_kl(teacher, student, temperature):
    log_p = numpy_log_softmax(teacher.astype("float64") / temperature)
    log_q = numpy_log_softmax(student.astype("float64") / temperature)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1) * temperature**2


def numpy_hint_mse(teacher, student):
    return ((student.astype("float64") - teacher) ** 2).reshape(len(teacher), -1).mean(1)


def numpy_attention_transfer(teacher, student, p=2.0):
    """The authors' at/at_loss, channels-last: per-example mean of squares."""

    def at(x):
        a = (np.abs(x.astype("float64")) ** p).mean(-1).reshape(len(x), -1)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    return ((at(student) - at(teacher)) ** 2).mean(1)


def numpy_cosine(teacher, student):
    t = teacher.reshape(len(teacher), -1).astype("float64")
    s = student.reshape(len(student), -1).astype("float64")
    return 1 - (t * s).sum(1) / (np.linalg.norm(t, axis=1) * np.linalg.norm(s, axis=1))


def numpy_smooth_l1(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def numpy_rkd_distance_matrix(teacher, student):
    """Port of the RKD authors' RkdDistance: the (n, n) smooth-L1 matrix."""

    def normalized_pdist(e):
        e = e.reshape(len(e), -1).astype("float64")
        squared = (e**2).sum(1)
        d = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * e @ e.T, 1e-12, None))
        np.fill_diagonal(d, 0)
        return d / d[d > 0].mean()

    return numpy_smooth_l1(normalized_pdist(student) - normalized_pdist(teacher))


def numpy_rkd_angle_tensor(teacher, student):
    """Port of the RKD authors' RKdAngle: the (n, n, n) smooth-L1 tensor."""

    def angles(e):
        e = e.reshape(len(e), -1).astype("float64")
        d = e[None, :, :] - e[:, None, :]
        d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
        return d @ d.transpose(0, 2, 1)

    return numpy_smooth_l1(angles(student) - angles(teacher))


def numpy_pkt_matrix(teacher, student, eps=1e-7):
    """Port of Passalis & Tefas' cosine_similarity_loss: the (n, n) KL terms."""

    def probabilities(x):
        x = x.reshape(len(x), -1).astype("float64")
        x = x / (np.sqrt((x**2).sum(1, keepdims=True)) + eps)
        kernel = (x @ x.T + 1) / 2
        return kernel / kernel.sum(1, keepdims=True)

    p, q = probabilities(teacher), probabilities(student)
    return p * np.log((p + eps) / (q + eps))


# --------------------------------------------------------------------------
# Feature-loss cases
# --------------------------------------------------------------------------


# Each feature loss with the shapes it is tested on, its per-example NumPy
# reference, and the scalar the authors' code would report for the batch.
FEATURE_CASES = {
    "mse": (
        losses.HintMSE(),
        (4, 3, 3, 5),
        (4, 3, 3, 5),
        numpy_hint_mse,
    ),
    "attention": (
        losses.AttentionTransfer(p=3.0),
        (4, 5, 5, 6),
        (4, 5, 5, 2),
        lambda t, s: numpy_attention_transfer(t, s, p=3.0),
    ),
    "cosine": (
        losses.CosineFeatureLoss(name="cos"),
        (4, 10),
        (4, 10),
        numpy_cosine,
    ),
    "rkd": (
        losses.RelationalKD(distance_weight=2.0, angle_weight=3.0),
        (5, 2, 2, 3),
        (5, 4),
        lambda t, s: 2.0 * numpy_rkd_distance_matrix(t, s).mean(1) + 3.0 * numpy_rkd_angle_tensor(t, s).mean((1, 2)),
    ),
    "pkt": (
        losses.ProbabilisticKT(),
        (6, 8),
        (6, 3),
        lambda t, s: numpy_pkt_matrix(t, s).sum(1) / len(t),
    ),
}


def feature_pair(case, seed=0, scale=1.0, same_shapes=False):
    """Random teacher and student features for a FEATURE_CASES entry.

    `same_shapes` gives the student the teacher's shape: half the compiles,
    for the tests that run eagerly on every backend.
    """
    _, teacher_shape, student_shape, _ = FEATURE_CASES[case]
    if same_shapes:
        student_shape = teacher_shape
    rng = np.random.default_rng(seed)
    teacher = (scale * rng.normal(size=teacher_shape)).astype("float32")
    student = (scale * rng.normal(size=student_shape)).astype("float32")
    return teacher, student
