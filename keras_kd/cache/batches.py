"""The layout of a cached batch, and how a Distiller's step reads it.

A cached batch's inputs are a dict that carries the student's inputs and the
teacher's outputs for the same rows through Keras's data pipeline, so that
any batching or shuffling moves them together: the inputs under
`INPUTS_KEY`, the teacher's logits as the cache's output kind stores them
under that kind's `batch_key` (`keras_kd.cache.kinds`; `LOGITS_KEY` for
dense logits), and the features under `FEATURES_KEY`.
"""

from keras_kd.cache import kinds
from keras_kd.cache.errors import CacheMismatchError

# Prefixed so that they cannot clash with a model's own input names.
INPUTS_KEY = "keras_kd_inputs"
LOGITS_KEY = kinds.DenseLogits.batch_key
FEATURES_KEY = "keras_kd_teacher_features"


def split_cached(x):
    """`(inputs, cached_outputs)`; `cached_outputs` is None for ordinary inputs."""
    if isinstance(x, dict) and kinds.kind_of_batch(x) is not None:
        return x[INPUTS_KEY], x
    return x, None


def cached_teacher_outputs(cached_outputs, feature_layers):
    """The cached `(teacher_logits, [features in feature_layers order])`.

    The logits are dense whatever the cache stores: a top-k cache's batch
    carries its top-k arrays, rebuilt into dense logits here, on the device
    (`keras_kd.cache.topk.dense_logits`).
    """
    features = cached_outputs.get(FEATURES_KEY, {})
    missing = [layer for layer in feature_layers if layer not in features]
    if missing:
        raise CacheMismatchError(
            f"The batch carries no cached features of teacher layers {missing} "
            f"(it carries {sorted(features)}). Build the cache with those feature_layers."
        )
    kind = kinds.kind_of_batch(cached_outputs)
    logits = kind.logits_from_batch(cached_outputs[kind.batch_key])
    return logits, [features[layer] for layer in feature_layers]
