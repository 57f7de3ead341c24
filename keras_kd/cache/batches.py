"""The layout of a cached batch, and how a Distiller's step reads it.

A cached batch's inputs are a dict that carries the student's inputs and the
teacher's outputs for the same rows through Keras's data pipeline, so that
any batching or shuffling moves them together.
"""

from keras_kd.cache import topk
from keras_kd.cache.errors import CacheMismatchError

# Prefixed so that they cannot clash with a model's own input names.
INPUTS_KEY = "keras_kd_inputs"
LOGITS_KEY = "keras_kd_teacher_logits"
FEATURES_KEY = "keras_kd_teacher_features"


def split_cached(x):
    """`(inputs, cached_outputs)`; `cached_outputs` is None for ordinary inputs."""
    if isinstance(x, dict) and (LOGITS_KEY in x or topk.find_batch_key(x)[0] is not None):
        return x[INPUTS_KEY], x
    return x, None


def cached_teacher_outputs(cached_outputs, feature_layers):
    """The cached `(teacher_logits, [features in feature_layers order])`.

    A top-k cache's batch carries its top-k arrays instead of the logits;
    they are rebuilt into dense logits here, on the device
    (`keras_kd.cache.topk.dense_logits`).
    """
    features = cached_outputs.get(FEATURES_KEY, {})
    missing = [layer for layer in feature_layers if layer not in features]
    if missing:
        raise CacheMismatchError(
            f"The batch carries no cached features of teacher layers {missing} "
            f"(it carries {sorted(features)}). Build the cache with those feature_layers."
        )
    if LOGITS_KEY in cached_outputs:
        logits = cached_outputs[LOGITS_KEY]
    else:
        key, num_classes = topk.find_batch_key(cached_outputs)
        arrays = cached_outputs[key]
        logits = topk.dense_logits(*(arrays[name] for name in topk.ARRAY_NAMES), num_classes)
    return logits, [features[layer] for layer in feature_layers]
