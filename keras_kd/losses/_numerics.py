"""Numerically safe building blocks shared by the loss families.

Each keeps float32 from overflowing or dividing by zero at extreme or
degenerate inputs (huge activations, all-zero vectors), without changing any
result that is not degenerate.
"""

from keras import ops

# A positive floor far below any meaningful float32 value: keeps square roots
# and divisions away from 0 (and their gradients finite) without changing
# any result that is not degenerate.
TINY = 1e-30


def flatten_per_example(tensor):
    """`(batch, ...)` -> `(batch, features)`."""
    return ops.reshape(tensor, (ops.shape(tensor)[0], -1))


def divide_by_max_abs(tensor, axis=None):
    """Scales `tensor` so that its largest magnitude (along `axis`) is 1.

    Only for quantities that are invariant to a positive rescaling (normalized
    vectors, normalized distances): it keeps their squares from overflowing
    float32 for large inputs. The scale is a constant for autodiff, which is
    exact because the final quantity does not depend on it.
    """
    scale = ops.max(ops.abs(tensor), axis=axis, keepdims=True)
    return tensor / ops.stop_gradient(ops.maximum(scale, TINY))


def l2_normalize(tensor, axis=-1):
    """`x / ||x||` along `axis`, overflow-safe; a zero vector gives 0.

    As `torch.nn.functional.normalize` (used by the reference code) for
    every nonzero vector. At an all-zero vector the direction is undefined:
    the result is 0 with a zero gradient (torch's gradient there is
    1 / 1e-12, which blows up an optimizer step).
    """
    is_zero = ops.all(ops.equal(tensor, 0.0), axis=axis, keepdims=True)
    tensor = divide_by_max_abs(tensor, axis=axis)
    # After the rescaling the squared norm is >= 1 for a nonzero vector, so
    # the floor of 0.5 only acts (keeping values finite) at zero vectors.
    squared_norm = ops.maximum(ops.sum(ops.square(tensor), axis=axis, keepdims=True), 0.5)
    return ops.where(is_zero, 0.0, tensor / ops.sqrt(squared_norm))
