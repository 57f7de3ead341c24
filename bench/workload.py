"""One benchmark configuration, timed in the current process.

`python -m bench.workload '<json spec>'` runs one configuration on the Keras
backend chosen by `KERAS_BACKEND` and prints one JSON line of results; the
runner starts one such process per configuration, so that each peak-memory
figure belongs to one configuration alone. A spec with `configs` (a list)
times them all in the one process, interleaved (`run_interleaved`; the
pairs whose epochs are short). `run(spec)` and
`run_interleaved(spec)` do the same in-process (the smoke run).

Each configuration builds its models, warms up (compilation, tracing) on a
few batches, then times `repeats` epochs, each a full pass over the random
data of the pair's input shape; the result keeps every epoch's time.
"""

import json
import os
import resource
import sys
import time

import numpy as np

# What each configuration times, for the report.
CONFIGS = {
    "student": "student alone (`student.fit`)",
    "teacher_inference": "teacher inference (`teacher.predict`)",
    "kd_logits": "keras_kd KD, logits, uncached",
    "kd_features": "keras_kd KD, logits + features, uncached",
    "kd_cached": "keras_kd KD, logits, cached (`TeacherCache`)",
    "kd_cached_features": "keras_kd KD, logits + features, cached",
    "core_logits": "core `keras.distillation.Distiller`, logits (KLDivergence)",
    "core_features": "core `keras.distillation.Distiller`, logits + features",
    "torch_logits": "pure-PyTorch KD loop, logits",
    "torch_features": "pure-PyTorch KD loop, logits + features",
    "torch_student": "pure-PyTorch student alone",
    "torch_cached": "pure-PyTorch KD loop, logits, teacher's precomputed",
}
TORCH_CONFIGS = ("torch_logits", "torch_features", "torch_student", "torch_cached")
TEMPERATURE = 4.0
ALPHA = 0.9  # keras_kd's convention: the weight of the soft term.
LEARNING_RATE = 1e-3
RESULT_PREFIX = "BENCH_RESULT "


def resident_megabytes():
    """The current resident set size of this process, in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_megabytes():
    """The peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_data(images, input_shape, num_classes=10, seed=0):
    """Random inputs of `input_shape` in [0, 1) and labels (speed ignores the values)."""
    rng = np.random.default_rng(seed)
    x = rng.random((images, *input_shape), dtype=np.float32)
    y = rng.integers(0, num_classes, size=images).astype("int32")
    return x, y


def run(spec):
    """Runs one configuration; returns a dict of its measurements.

    Args:
        spec: A dict with `pair` (a key of `bench.pairs.PAIRS`), `config` (a
            key of `CONFIGS`), `images`, `batch_size`, `repeats`,
            `warmup_steps`, `smoke` and optionally `dtype_policy` and
            `epochs_per_fit` (above 1: each repeat is one `fit` of that
            many epochs, timed one by one inside it; its fastest counts).

    Returns:
        A dict: the spec, `epoch_seconds` (one per repeat), `seconds` (their
        minimum), `images_per_second`, `rss_before_mb` (with the data, before
        the framework is imported), `peak_rss_mb`, and extras such as `cache_build_seconds`.

    Raises:
        ValueError: for an unknown pair or configuration, or an image count
            that is not a multiple of the batch size.
    """
    pair, x, y = _check_spec(spec, [spec["config"]])
    result = dict(spec)
    result["rss_before_mb"] = resident_megabytes()
    timer, extras = _prepare(spec, pair, x, y)
    result.update(extras)
    _record(result, [timer() for _ in range(spec["repeats"])])
    return result


def run_interleaved(spec):
    """Times several configurations in this process, one epoch of each in turn.

    Each configuration is built and warmed up first; then every round times
    one epoch of each, in the order given, `repeats` rounds. Load that a
    shared machine puts on one round hits every configuration alike, which
    one process per configuration cannot promise when epochs are short.

    Args:
        spec: As for `run`, with `configs` (a list of keys of `CONFIGS`) in
            place of `config`.

    Returns:
        A list of result dicts as `run` returns, one per configuration, in
        the order of `configs`, each with `config` set and `interleaved`
        True; `peak_rss_mb` is the process's, shared by all of them.

    Raises:
        ValueError: as `run`.
    """
    configs = list(spec["configs"])
    pair, x, y = _check_spec(spec, configs)
    common = {key: value for key, value in spec.items() if key != "configs"}
    rss_before = resident_megabytes()
    results, timers = [], []
    for config in configs:
        timer, extras = _prepare(dict(common, config=config), pair, x, y)
        results.append(dict(common, config=config, interleaved=True, rss_before_mb=rss_before, **extras))
        timers.append(timer)
    epoch_seconds = [[] for _ in configs]
    for _ in range(spec["repeats"]):
        for timer, seconds in zip(timers, epoch_seconds):
            seconds.append(timer())
    for result, seconds in zip(results, epoch_seconds):
        _record(result, seconds)
    return results


def _check_spec(spec, configs):
    """Checks a spec's pair, configurations and sizes; returns `(pair, x, y)`."""
    from bench.pairs import PAIRS

    for config in configs:
        if config not in CONFIGS:
            raise ValueError(f"Unknown configuration {config!r}; valid: {sorted(CONFIGS)}.")
    if spec["pair"] not in PAIRS:
        raise ValueError(f"Unknown pair {spec['pair']!r}; valid: {sorted(PAIRS)}.")
    if spec["images"] % spec["batch_size"]:
        # A smaller last batch would be compiled again inside the timed epoch.
        raise ValueError(f"images ({spec['images']}) must be a multiple of batch_size ({spec['batch_size']}).")
    pair = PAIRS[spec["pair"]]
    x, y = random_data(spec["images"], pair.input_shape[spec["smoke"]])
    return pair, x, y


def _prepare(spec, pair, x, y):
    """Builds and warms up the spec's configuration; returns `(timer, extras)`."""
    if spec["config"] in TORCH_CONFIGS:
        return _torch_workload(spec, x, y)
    return _keras_workload(spec, pair, x, y)


def _record(result, epoch_seconds):
    """Adds the timings and the peak memory so far to `result`."""
    result["epoch_seconds"] = epoch_seconds
    result["seconds"] = min(epoch_seconds)
    result["images_per_second"] = result["images"] / result["seconds"]
    # The kernel's peak (ru_maxrss) and /proc's resident size are counted
    # slightly differently; a peak is at least any size measured before it.
    result["peak_rss_mb"] = max(peak_megabytes(), resident_megabytes(), result["rss_before_mb"])


def _timed(run_epoch, sync):
    """A function that runs one epoch, waits for the device, and returns its seconds."""

    def timer():
        start = time.perf_counter()
        run_epoch()
        sync()
        return time.perf_counter() - start

    return timer


def _keras_workload(spec, pair, x, y):
    """Builds and warms up a Keras configuration; returns `(timer, extras)`."""
    import keras

    import keras_kd

    # Before any layer is built: the policy applies to layers made after it.
    keras.config.set_dtype_policy(spec.get("dtype_policy", "float32"))
    teacher, student = _build_models(pair, spec["smoke"])
    extras = {
        "backend": keras.config.backend(),
        "teacher_parameters": _trainable_parameters(teacher),
        "student_parameters": _trainable_parameters(student),
    }
    batch_size = spec["batch_size"]
    # The smoke run skips XLA compilation, which takes most of its time.
    jit_compile = False if spec["smoke"] else "auto"
    warmup_rows = spec["warmup_steps"] * batch_size
    config = spec["config"]
    features = config.endswith("features")

    def sync_on(model):
        return lambda: keras.ops.convert_to_numpy(model.trainable_variables[0])

    if config == "teacher_inference":
        teacher.compile(jit_compile=jit_compile)
        teacher.predict(x[:warmup_rows], batch_size=batch_size, verbose=0)
        run_epoch = lambda: teacher.predict(x, batch_size=batch_size, verbose=0)  # noqa: E731
        return _timed(run_epoch, lambda: None), extras

    if config == "student":
        model = student
        model.compile(
            optimizer=keras.optimizers.Adam(LEARNING_RATE),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
    elif config.startswith("core"):
        model = core_distiller(teacher, student, pair, features=features, jit_compile=jit_compile)
    else:
        feature_matches = (
            [keras_kd.FeatureMatch(pair.teacher_feature, pair.student_feature, loss="mse")] if features else []
        )
        model = keras_kd.Distiller(
            teacher, student, temperature=TEMPERATURE, alpha=ALPHA, feature_matches=feature_matches
        )
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit_compile)

    if config.startswith("kd_cached"):
        from keras_kd.cache import TeacherCache

        start = time.perf_counter()
        cache = TeacherCache.for_distiller(model, x, batch_size=batch_size)
        extras["cache_build_seconds"] = time.perf_counter() - start
        data = cache.dataset(x, y, batch_size=batch_size, shuffle=True, seed=0)
        model.fit(data, epochs=1, steps_per_epoch=spec["warmup_steps"], verbose=0)
        fit = lambda **kwargs: model.fit(data, verbose=0, **kwargs)  # noqa: E731
    else:
        model.fit(x[:warmup_rows], y[:warmup_rows], batch_size=batch_size, epochs=1, verbose=0)
        fit = lambda **kwargs: model.fit(x, y, batch_size=batch_size, verbose=0, **kwargs)  # noqa: E731
    epochs_per_fit = spec.get("epochs_per_fit", 1)
    if epochs_per_fit > 1:
        return _timed_inside_fit(fit, epochs_per_fit), extras
    return _timed(lambda: fit(epochs=1), sync_on(student)), extras


def _timed_inside_fit(fit, epochs):
    """A function that runs `fit` for `epochs` epochs and returns the fastest one's seconds.

    Each epoch is timed from its start to its end inside the call, so the
    call's own set-up (Keras's data adapter, keras_kd's checks of the data
    and the teacher) is left out, as it is paid once by a user's
    `fit(epochs=...)`. By the end of an epoch its logs have been read back,
    so the device has finished its steps.
    """
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    def timer():
        seconds.clear()
        fit(epochs=epochs, callbacks=[EpochTimes()])
        return min(seconds)

    seconds = []
    return timer


def _build_models(pair, smoke):
    """A fresh `(teacher, student)`; the smoke run builds them once per process."""
    if smoke and pair.name in _SMOKE_MODELS:
        return _SMOKE_MODELS[pair.name]
    import keras

    keras.utils.set_random_seed(0)
    models = pair.build_teacher(smoke), pair.build_student(smoke)
    if smoke:
        # Building is most of a tiny run's time (on JAX each new weight
        # shape compiles its initializer); the timings mean nothing there.
        _SMOKE_MODELS[pair.name] = models
    return models


_SMOKE_MODELS = {}


def _trainable_parameters(model):
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def core_distiller(teacher, student, pair, features=False, jit_compile="auto"):
    """Core Keras's Distiller, compiled, with real KL (its default string skips the softmax).

    Args:
        teacher: The teacher, a `keras.Model`.
        student: The student, a `keras.Model`.
        pair: The `bench.pairs.Pair`, whose layers feature matching aligns.
        features: Whether to add core's `FeatureDistillation` on those layers.
        jit_compile: As for `keras.Model.compile`.

    Returns:
        A compiled `keras.distillation.Distiller` weighing the soft term by
        `ALPHA`, as keras_kd's Distiller in the benchmark does.
    """
    import keras
    from keras import distillation

    losses = [distillation.LogitsDistillation(temperature=TEMPERATURE, loss=keras.losses.KLDivergence())]
    if features:
        losses.append(
            distillation.FeatureDistillation(
                loss="mse",
                teacher_layer_name=pair.teacher_feature,
                student_layer_name=pair.student_feature,
            )
        )
    model = distillation.Distiller(
        teacher,
        student,
        distillation_losses=losses,
        distillation_loss_weights=[1.0] * len(losses),
        # Core weighs the *student* (label) loss: 1 - alpha in our convention.
        student_loss_weight=1.0 - ALPHA,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def _torch_workload(spec, x, y):
    """Builds and warms up the pure-PyTorch loop; returns `(timer, extras)`."""
    import torch

    from bench import torch_loop

    if spec["pair"] not in torch_loop.TWINS:
        raise ValueError(
            f"The pure-PyTorch loop has twins of the pairs {sorted(torch_loop.TWINS)} only; got {spec['pair']!r}."
        )
    torch.manual_seed(0)
    # On the GPU when there is one, as the Keras runs are.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher, student = (model.to(device) for model in torch_loop.TWINS[spec["pair"]](spec["smoke"]))
    if x.ndim == 4:  # Images: PyTorch's layout is channels first.
        x = x.transpose(0, 3, 1, 2)
    images = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    labels = torch.from_numpy(y.astype("int64")).to(device)
    # The twin of a Keras mixed policy: autocast to its compute dtype.
    policy = spec.get("dtype_policy", "float32")
    autocast_dtype = {"mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}.get(policy)
    optimizer = torch.optim.Adam(student.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(0)
    config = spec["config"]
    feature_weight = 1.0 if config == "torch_features" else 0.0
    teacher_logits = None
    if config == "torch_cached":
        with torch.no_grad():
            teacher_logits = teacher(images)[0]

    def epoch(rows=None):
        with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            _torch_epoch(rows)

    def _torch_epoch(rows):
        if config == "torch_student":
            torch_loop.student_epoch(student, optimizer, images[:rows], labels[:rows], spec["batch_size"], generator)
            return
        torch_loop.distillation_epoch(
            teacher,
            student,
            optimizer,
            images[:rows],
            labels[:rows],
            spec["batch_size"],
            temperature=TEMPERATURE,
            alpha=ALPHA,
            feature_weight=feature_weight,
            generator=generator,
            teacher_logits=None if teacher_logits is None else teacher_logits[:rows],
        )

    epoch(spec["warmup_steps"] * spec["batch_size"])
    extras = {
        "backend": "pytorch",
        "teacher_parameters": torch_loop.count_parameters(teacher),
        "student_parameters": torch_loop.count_parameters(student),
        "torch_threads": torch.get_num_threads(),
        "torch_device": device,
    }
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return _timed(epoch, sync), extras


def main(argv=None):
    """Entry point of `python -m bench.workload SPEC_JSON`: prints one result line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m bench.workload '<json spec>'")
    spec = json.loads(argv[0])
    result = run_interleaved(spec) if "configs" in spec else run(spec)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
