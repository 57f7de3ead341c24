"""Profile: cached KD against the student alone (`KERAS_BACKEND=tensorflow python -m bench.profile_cached`).

Same small pair, 1,024 random images, batch 128, best of 3 epochs: `student.fit` on
arrays, `Distiller.fit` on `cache.dataset(...)`, and `Distiller.fit` on the cached
outputs passed as a dict of arrays; then a cProfile of one cached epoch.
"""

import cProfile
import io
import pstats
import time

import keras
import numpy as np

import keras_kd
from bench import workload
from bench.pairs import PAIRS
from keras_kd import cache as kd_cache

pair = PAIRS["small"]
x, y = workload.random_data(1024, (32, 32, 3))
keras.utils.set_random_seed(0)
teacher, student = pair.build_teacher(False), pair.build_student(False)
distiller = keras_kd.Distiller(teacher, student, temperature=4.0, alpha=0.9)
distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
cache = kd_cache.TeacherCache.for_distiller(distiller, x, batch_size=128)
data = cache.dataset(x, y, batch_size=128, shuffle=True, seed=0)
# The same cached outputs as plain arrays, batched by Keras's own array adapter.
arrays = {kd_cache.INPUTS_KEY: x, kd_cache.LOGITS_KEY: np.asarray(cache.teacher_logits)}


def best(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


student.compile(
    optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
)
student.fit(x[:256], y[:256], batch_size=128, verbose=0)
distiller.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
distiller.fit(arrays, y, batch_size=128, epochs=1, verbose=0)
print(f"student.fit(arrays)               {best(lambda: student.fit(x, y, batch_size=128, verbose=0)):.2f} s")
print(f"distiller.fit(cache.dataset(...)) {best(lambda: distiller.fit(data, epochs=1, verbose=0)):.2f} s")
print(
    f"distiller.fit(dict of arrays)     {best(lambda: distiller.fit(arrays, y, batch_size=128, epochs=1, verbose=0)):.2f} s"
)
profile = cProfile.Profile()
profile.enable()
distiller.fit(data, epochs=1, verbose=0)
profile.disable()
stream = io.StringIO()
pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(12)
print(stream.getvalue()[-4000:])
