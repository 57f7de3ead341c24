"""Teacher-output cache: run the frozen teacher once, then distil from its outputs.

Without augmentation, the teacher's outputs are the same in every epoch and in
every trial of a sweep, yet an ordinary distillation step recomputes them.
`TeacherCache.build` runs the teacher once (with `training=False`, streamed in
batches) over the training rows and keeps its logits, and the intermediate
features that feature matching needs, in memory or on disk as memory-mapped
`.npy` files. `TeacherCache.dataset` then yields each batch of inputs together
with the teacher's outputs for exactly those rows, and a `keras_kd.Distiller`
given that dataset takes the outputs from the batch instead of calling the
teacher.

A cache records a fingerprint of the teacher (a hash of all its weights) and of
the data (row count, shapes, dtypes and a hash of a sample of rows); a
Distiller refuses a cache made by another teacher, `dataset()` refuses other
data, and `load()` refuses truncated or corrupted files, so stale outputs are
never used silently.

The modules: `store` (`TeacherCache`: building, loading, checks), `kinds`
(how the teacher's logits are stored and given back: dense logits, or the
top-k of `topk`; one class per kind), `teacher_pass` (the one loop that runs
the teacher into the stored arrays), `files` (the on-disk layout),
`fingerprints` (of teachers and data), `sources` (the data a cache is built
from), `datasets` (the training data that carry the cached outputs),
`batches` (the layout of a cached batch, read by the Distiller's step),
`views` (a cache of augmented views: K per row with the teacher's outputs on
each, one given per epoch) and `errors`.
"""

from keras_kd.cache.batches import (
    FEATURES_KEY,
    INPUTS_KEY,
    LOGITS_KEY,
    cached_teacher_outputs,
    split_cached,
)
from keras_kd.cache.datasets import (
    check_data,
)
from keras_kd.cache.errors import (
    CacheMismatchError,
)
from keras_kd.cache.fingerprints import (
    sample_rows,
    teacher_fingerprint,
)
from keras_kd.cache.store import (
    TeacherCache,
)
