"""Relational losses: match the structure of the batch, not single features.

`rkd_distance` and `rkd_angle` (Park et al., CVPR 2019) and `pkt` (Passalis &
Tefas, ECCV 2018). Each is batch-level: example i's value is its share of
the batch's loss, so that the batch mean equals the authors' code. The
teacher's and the student's features are flattened and may differ in size.
"""

from keras import ops

from keras_kd import _casting
from keras_kd.losses._numerics import TINY, divide_by_max_abs, flatten_per_example, l2_normalize


def _safe_sqrt(value):
    """`sqrt(max(value, 0))` with a zero (not infinite) gradient at 0."""
    positive = value > TINY
    return ops.where(positive, ops.sqrt(ops.where(positive, value, 1.0)), 0.0)


def _smooth_l1(difference):
    """Huber loss with threshold 1 (`torch.nn.functional.smooth_l1_loss`)."""
    magnitude = ops.abs(difference)
    return ops.where(magnitude < 1.0, 0.5 * ops.square(difference), magnitude - 0.5)


def _off_diagonal_mask(batch_size):
    """Float `(batch, batch)` matrix: 1 off the diagonal, 0 on it."""
    index = ops.arange(batch_size)
    return ops.cast(ops.not_equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0)), "float32")


def _normalized_pairwise_distances(embeddings):
    """Euclidean distances between the rows, divided by their mean off the diagonal.

    Uses the Gram matrix (as the RKD code does) on centered, rescaled rows:
    the normalized distances do not depend on either, and both keep float32
    from cancelling or overflowing.
    """
    embeddings = embeddings - ops.mean(embeddings, axis=0, keepdims=True)
    embeddings = divide_by_max_abs(embeddings)
    squared_norms = ops.sum(ops.square(embeddings), axis=-1)
    squared = (
        ops.expand_dims(squared_norms, 1)
        + ops.expand_dims(squared_norms, 0)
        - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings))
    )
    off_diagonal = _off_diagonal_mask(ops.shape(embeddings)[0])
    distances = _safe_sqrt(squared) * off_diagonal
    mean_distance = ops.sum(distances) / ops.maximum(ops.sum(off_diagonal), 1.0)
    # After the rescaling, a batch that is not all duplicates has a mean
    # distance far above the floor, which only keeps 0 / 0 away.
    return distances / ops.maximum(mean_distance, 1e-12)


def _pairwise_angles(embeddings):
    """`cos` of the angle at each anchor i between (j - i) and (k - i): `(n, n, n)`."""
    directions = l2_normalize(ops.expand_dims(embeddings, 0) - ops.expand_dims(embeddings, 1))
    return ops.matmul(directions, ops.transpose(directions, (0, 2, 1)))


def rkd_distance(teacher_feature, student_feature):
    """RKD distance loss: match the batch's normalized pairwise distances.

    Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
    RKD-D: `huber(d_s(i, j) / mu_s - d_t(i, j) / mu_t)` over pairs, where `mu`
    is the mean distance between distinct examples in the batch.

    A batch-level loss: example i's value is the mean over j of its row of
    the pairwise loss matrix, so the batch mean equals the authors' code
    (mean over all n x n entries, the zero diagonal included). Features are
    flattened; teacher and student sizes may differ.

    Paper vs code: the paper sums over pairs; the code averages over the
    n x n matrix, and computes `mu` over the distances > 0 (distinct
    examples, barring exact duplicates). The weights of `RelationalKD`
    (25 and 50) go with the code's averaging, which is followed here.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of shape `(batch, ...)`.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd.losses import rkd_distance

    points = np.random.default_rng(0).normal(size=(4, 3))
    assert bool(keras.ops.max(rkd_distance(points, 5 * points + 1)) < 1e-6)
    ```
    """
    teacher_feature, student_feature = _casting.floats32(teacher_feature, student_feature)
    difference = _normalized_pairwise_distances(flatten_per_example(student_feature)) - _normalized_pairwise_distances(
        flatten_per_example(teacher_feature)
    )
    return ops.mean(_smooth_l1(difference), axis=-1)


def rkd_angle(teacher_feature, student_feature):
    """RKD angle loss: match the angles formed by every triplet of the batch.

    Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
    RKD-A: `huber(cos angle_s(i, j, k) - cos angle_t(i, j, k))`, the angle at
    example i between the directions to j and to k.

    A batch-level loss: example i's value is the mean over (j, k) of the
    triplets with i as the vertex, so the batch mean equals the authors' code
    (mean over all n^3 triplets; degenerate ones, j or k equal to i, give a
    zero direction and cosine 0 for both models). Costs n^2 * feature_size
    floats of memory, as in the code: pool large feature maps first.

    Paper vs code: the paper sums over triplets of distinct examples; the
    code, followed here, averages over all n^3 (see `rkd_distance`).

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of shape `(batch, ...)`.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd.losses import rkd_angle

    points = np.random.default_rng(0).normal(size=(4, 3))
    assert bool(keras.ops.max(rkd_angle(points, 2 * points - 1)) < 1e-6)
    ```
    """
    teacher_feature, student_feature = _casting.floats32(teacher_feature, student_feature)
    difference = _pairwise_angles(flatten_per_example(student_feature)) - _pairwise_angles(
        flatten_per_example(teacher_feature)
    )
    return ops.mean(_smooth_l1(difference), axis=(1, 2))


def _cosine_kernel_probabilities(embeddings):
    """Row-stochastic matrix of the cosine kernel `(1 + cos) / 2` (self included)."""
    directions = l2_normalize(embeddings)
    kernel = (ops.matmul(directions, ops.transpose(directions)) + 1.0) / 2.0
    return kernel / ops.sum(kernel, axis=-1, keepdims=True)


def pkt(teacher_feature, student_feature, epsilon=1e-7):
    """Probabilistic knowledge transfer: match the batch's similarity distributions.

    Passalis & Tefas, "Learning Deep Representations with Probabilistic
    Knowledge Transfer", ECCV 2018. Each example's cosine-kernel similarities
    to the batch, normalized to a distribution, are matched by
    `KL(teacher || student)`.

    A batch-level loss: example i's value is the KL of row i divided by the
    batch size, so the batch mean equals the authors' code (a mean over all
    n x n entries). Features are flattened; sizes may differ.

    Paper vs code: the paper's conditional probabilities leave out the
    example itself (k != i) and its loss sums over the batch; the authors'
    code, followed here so that published weights carry over (e.g.
    RepDistiller's 30000 at batch size 64), keeps the self-similarity in
    the normalization, averages over n x n entries, and adds
    `epsilon = 1e-7` inside the log ratio.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of shape `(batch, ...)`.
        epsilon: Added to both probabilities inside the log.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd.losses import pkt

    points = np.random.default_rng(0).normal(size=(4, 3))
    assert bool(keras.ops.max(pkt(points, 3 * points)) < 1e-6)
    ```
    """
    teacher_feature, student_feature = _casting.floats32(teacher_feature, student_feature)
    teacher_probs = _cosine_kernel_probabilities(flatten_per_example(teacher_feature))
    student_probs = _cosine_kernel_probabilities(flatten_per_example(student_feature))
    row_kl = ops.sum(
        teacher_probs * (ops.log(teacher_probs + epsilon) - ops.log(student_probs + epsilon)),
        axis=-1,
    )
    return row_kl / ops.cast(ops.shape(teacher_probs)[0], "float32")
