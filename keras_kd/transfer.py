"""Distilling beyond the labelled set: transfer sets and function matching.

A teacher can label any input. Two ways to use that:

- **Transfer sets** (Hinton et al., 2015): fit on labelled and unlabelled
  examples together. An unlabelled example carries the label `UNLABELED`
  (-1); the hard-label loss then skips it, per example, so batches may mix
  both kinds, while the distillation term applies to every example.
  `with_transfer_set` builds such a training set from arrays.
- **Function matching** (Beyer et al., "Knowledge distillation: A good
  teacher is patient and consistent", CVPR 2022): the teacher and the
  student see the *same* randomly augmented and/or mixup-ed batch, drawn
  inside the train step (see `keras_kd.FunctionMatchingDistiller`).
  `mix_batch` is its mixup, written in `keras.ops` so it runs under jit on
  every backend.
"""

import numpy as np
from keras import ops, random

# The label of an example without one, in sparse labels (a one-hot row of
# -1 for one-hot labels).
UNLABELED = -1


def with_transfer_set(x_labeled, y_labeled, x_unlabeled):
    """Appends unlabelled examples, labelled `UNLABELED`, to a labelled set.

    Args:
        x_labeled: Array of labelled inputs, shape `(N, ...)`.
        y_labeled: Their labels: class ids of shape `(N,)` (or `(N, 1)`), or
            one-hot rows of shape `(N, classes)`.
        x_unlabeled: Array of unlabelled inputs, shape `(M, ...)`, the same
            shape per example as `x_labeled`.

    Returns:
        `(x, y)` with `N + M` rows, labelled rows first; the unlabelled rows
        carry -1 (a row of -1 for one-hot labels). Pass them to `fit` with
        `shuffle=True` so that batches mix both kinds.

    Raises:
        ValueError: for inputs of different shapes, a labelled set whose
            labels do not match its inputs in number, or labels that are
            already negative.

    Example:

    ```python
    import numpy as np
    import keras_kd

    rng = np.random.default_rng(0)
    x_few, y_few = rng.random((8, 8), dtype="float32"), rng.integers(0, 3, 8)
    x_many = rng.random((24, 8), dtype="float32")
    teacher = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(8,))

    x, y = keras_kd.transfer.with_transfer_set(x_few, y_few, x_many)   # y is -1 on x_many
    keras_kd.Distiller(teacher, student, alpha=0.5).compile("adam").fit(x, y, verbose=0)
    ```
    """
    x_labeled, y_labeled, x_unlabeled = (np.asarray(a) for a in (x_labeled, y_labeled, x_unlabeled))
    if x_labeled.shape[1:] != x_unlabeled.shape[1:]:
        raise ValueError(
            f"Labelled inputs have shape {x_labeled.shape[1:]} per example but "
            f"unlabelled ones {x_unlabeled.shape[1:]}; both go through the same "
            "models, so they must match."
        )
    if len(y_labeled) != len(x_labeled):
        raise ValueError(f"{len(x_labeled)} labelled inputs but {len(y_labeled)} labels; give one label per input.")
    if y_labeled.size and y_labeled.min() < 0:
        raise ValueError(
            f"Labels must be >= 0; got {y_labeled.min().item()!r}. Negative labels "
            f"({UNLABELED}) are how unlabelled examples are marked."
        )
    missing = np.full((len(x_unlabeled),) + y_labeled.shape[1:], UNLABELED, dtype=y_labeled.dtype)
    return np.concatenate([x_labeled, x_unlabeled]), np.concatenate([y_labeled, missing])


def every_row_labeled(labels):
    """True when `labels` are a NumPy array of numbers with no entry marked `UNLABELED`.

    `Distiller.fit` trains on such labels with a step that skips the label
    masks of transfer sets: the same losses and gradients, in fewer ops.
    False for anything else (tensors, datasets, generators, None), whose
    rows are masked step by step.
    """
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iuf" or not labels.size:
        return False
    # A NaN minimum compares False: NaN labels are masked, as the step masks them.
    return bool(labels.min() >= 0)


def label_mask(labels):
    """1.0 for labelled examples, 0.0 for those marked `UNLABELED`, per example.

    Sparse labels are unlabelled where negative; one-hot rows where any entry
    is negative.
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) > 1:
        labels = ops.min(ops.reshape(labels, (ops.shape(labels)[0], -1)), axis=-1)
    return ops.cast(ops.greater_equal(labels, 0), "float32")


def fill_missing_labels(labels):
    """Replaces `UNLABELED` by a valid label (0), for losses to run on every row.

    The loss of those rows is then masked out with `label_mask`; a one-hot row
    of -1 becomes a row of zeros, whose cross-entropy is 0 anyway.
    """
    # max(labels, 0) in one op (ops.maximum converts the 0 at every call).
    return ops.relu(labels)


def mix_batch(x, concentration, seed_generator):
    """Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", 2018).

    Each example is mixed with another example of the same batch:
    `weight * x + (1 - weight) * x[partner]`, with `partner` a random
    permutation of the batch and one `weight ~ Beta(concentration,
    concentration)` per example (Beyer et al. draw per example too).

    Args:
        x: A batch of inputs, shape `(batch, ...)`, float.
        concentration: Positive float, the Beta distribution's parameter
            (0.2 to 1.0 are usual; 1.0 mixes uniformly).
        seed_generator: A `keras.random.SeedGenerator`, so the draws are
            reproducible and advance inside a jitted step.

    Returns:
        `(mixed_x, partner, weight)`: the mixed batch, the partner index of
        each example (int32, shape `(batch,)`) and its weight (float32,
        shape `(batch,)`), so labels can be mixed the same way.
    """
    batch_size = ops.shape(x)[0]
    partner = random.shuffle(ops.arange(batch_size, dtype="int32"), seed=seed_generator)
    first = sample_gamma((batch_size,), concentration, seed_generator)
    second = sample_gamma((batch_size,), concentration, seed_generator)
    weight = first / ops.maximum(first + second, 1e-30)  # ~ Beta(c, c)
    broadcast_weight = ops.reshape(weight, (-1,) + (1,) * (len(x.shape) - 1))
    broadcast_weight = ops.cast(broadcast_weight, x.dtype)
    mixed = broadcast_weight * x + (1 - broadcast_weight) * ops.take(x, partner, axis=0)
    return mixed, partner, weight


def sample_gamma(shape, concentration, seed_generator, rounds=8):
    """Draws from Gamma(concentration, 1) with `keras.ops` only.

    `keras.random.beta` and `keras.random.gamma` use an op that TensorFlow
    cannot compile with XLA, so mixup draws its Beta weights from this
    instead: the same algorithm on every backend, under any jit.

    Marsaglia & Tsang's method ("A Simple Method for Generating Gamma
    Variables", ACM TOMS 2000), vectorised: `rounds` candidates per value,
    keeping the first accepted one. Each is accepted with probability above
    0.95 for concentration >= 1, so 8 rounds all fail with probability below
    1e-10 (the mode is returned then). Concentrations below 1 use
    `Gamma(c) = Gamma(c + 1) * U ** (1 / c)`.
    """
    boosted = concentration < 1.0
    shape_parameter = concentration + 1.0 if boosted else concentration
    d = shape_parameter - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    normal = random.normal((rounds,) + tuple(shape), seed=seed_generator)
    uniform = random.uniform((rounds,) + tuple(shape), seed=seed_generator)
    v = (1.0 + c * normal) ** 3
    safe_v = ops.maximum(v, 1e-30)
    accepted = ops.logical_and(
        v > 0,
        ops.log(ops.maximum(uniform, 1e-30)) < 0.5 * normal**2 + d - d * safe_v + d * ops.log(safe_v),
    )
    candidates = ops.where(accepted, d * safe_v, 0.0)
    first_accepted = ops.argmax(ops.cast(accepted, "int32"), axis=0)
    value = ops.take_along_axis(candidates, ops.expand_dims(first_accepted, 0), axis=0)[0]
    value = ops.where(ops.any(accepted, axis=0), value, d)
    if boosted:
        boost = random.uniform(tuple(shape), minval=1e-7, maxval=1.0, seed=seed_generator)
        value = value * boost ** (1.0 / concentration)
    return value
