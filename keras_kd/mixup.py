"""Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) inside the train step.

Function matching (`keras_kd.FunctionMatchingDistiller`) mixes each training
batch inside the step, so the teacher and the student see the same mixed
inputs. Written in `keras.ops`, so it runs under jit on every backend.
"""

from keras import ops, random

from keras_kd import validation


def check_concentration(value, name="mixup"):
    """Returns the Beta concentration of mixup as a float: >= 0, 0 turning mixup off."""
    value = validation.check_real_number(name, value, schedulable=False)
    if value < 0:
        raise ValueError(
            f"`{name}` must be >= 0: the Beta concentration of mixup (0 turns "
            f"it off; 0.2 to 1.0 are usual); got {value!r}."
        )
    return value


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
