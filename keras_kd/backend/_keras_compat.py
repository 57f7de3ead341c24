"""The private Keras APIs keras_kd relies on, in one place.

Keras 3 has no public way to do these few things, so each one reaches into
`keras.src` or a private attribute. Keeping them here means a new Keras
release is checked against one short file, and `pyproject.toml` bounds Keras
to the versions this file was checked on (`TESTED_KERAS`); `import keras_kd`
warns about a Keras outside that range (`warn_if_untested_keras`).

Every function below was checked on Keras 3.12.4, 3.13.2, 3.14.1 and 3.15.1
(2026-12-01, on torch, TensorFlow and JAX): the `keras.src` paths and
attribute names are the same in all of them. `tests/test_backend.py` checks
each one on the installed Keras (`test_every_keras_internal_of_keras_compat_
works_on_this_keras`): run it first when moving the bounds.

This module imports Keras only inside its functions, so `import keras_kd`
can check the version without fixing the Keras backend.
"""

import importlib.metadata
import re
import warnings

# [lowest, highest) (major, minor) versions of Keras the test suite passes on;
# pyproject's `keras>=3.14,<3.16` says the same (tests/test_packaging.py).
# The functions below work on 3.12 and 3.13 too, but there Keras's JAX
# `evaluate(return_dict=True)` returns arrays, not floats (3 tests fail).
TESTED_KERAS = ((3, 14), (3, 16))


def warn_if_untested_keras():
    """Warns when the installed Keras is outside `TESTED_KERAS`.

    Reads the version from the package metadata, so Keras is not imported.
    Nothing happens when Keras is not installed (importing a keras_kd class
    then fails with Keras's own ModuleNotFoundError).
    """
    try:
        installed = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return
    match = re.match(r"(\d+)\.(\d+)", installed)
    lowest, highest = TESTED_KERAS
    if match and lowest <= (int(match[1]), int(match[2])) < highest:
        return
    tested = f"keras>={lowest[0]}.{lowest[1]},<{highest[0]}.{highest[1]}"
    warnings.warn(
        f"keras_kd was tested with {tested}, but Keras {installed} is installed. "
        "keras_kd uses a few private Keras APIs (listed in "
        "keras_kd/backend/_keras_compat.py) that another Keras may have changed; "
        f"if something fails, install a tested one: pip install '{tested}'.",
        UserWarning,
        stacklevel=2,
    )


def loss_tracker(model):
    """The metric behind a compiled model's "loss" log (a `keras.metrics.Mean` unless replaced).

    A custom train step updates it itself; Keras creates it in `compile()`
    as `Trainer._loss_tracker` and offers no public handle.
    """
    return model._loss_tracker


def set_loss_tracker(model, metric):
    """Makes `metric` the compiled model's first metric, the one behind its "loss" log.

    Set outside Keras's attribute tracking, as `compile()` sets its own, so
    `model.metrics` lists it once.
    """
    object.__setattr__(model, "_loss_tracker", metric)


def compile_metrics(model):
    """The container of `compile(metrics=..., weighted_metrics=...)`, or None.

    `Trainer._compile_metrics`; the public `model.metrics` mixes it with the
    loss tracker and every other metric.
    """
    return model._compile_metrics


def flat_compile_metrics(container):
    """`(metrics, weighted_metrics)` of a `compile_metrics` container.

    `CompileMetrics._flat_metrics` / `_flat_weighted_metrics`: one entry per
    model output, a metric that updates all of that output's metrics (None
    for an output without any). keras_kd updates them itself because it
    masks unlabelled rows out of both kinds, which the container's
    `update_state` cannot.
    """
    return container._flat_metrics, container._flat_weighted_metrics


def metrics_apart_from(model, skipped_layer):
    """`model.metrics` as Keras's `Trainer.metrics` lists them, less those `skipped_layer` holds.

    The same walk and order as `Trainer.metrics` (the compiled trackers and
    metrics, the model's own, then every sublayer's, nested models' own
    trackers left out), except that it does not enter `skipped_layer`: a
    layer reached only through it is left out, one also reached another
    way is kept. Keras offers no public way to prune the walk; its
    `_layers`, `_metrics`, `_compile_loss` and the `Trainer` class are
    read as `Trainer.metrics` reads them.
    """
    import collections

    from keras.src.trainers.trainer import Trainer

    metrics = []
    if model.compiled:
        metrics += [metric for metric in (model._loss_tracker, model._compile_metrics) if metric is not None]
        if model._compile_loss is not None:
            metrics += model._compile_loss.metrics
    metrics += model._metrics
    seen = {id(skipped_layer)}
    pending = collections.deque(model._layers)
    while pending:
        layer = pending.popleft()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if not isinstance(layer, Trainer):
            metrics += layer.metrics
        pending.extendleft(layer._layers)
    return metrics


def variables_apart_from(model, skipped_layer):
    """`model.variables` as Keras's `Layer.variables` lists them, less those of `skipped_layer` alone.

    The same order and deduplication: the model's own variables, its seed
    generators' states, then each sublayer's `variables`, `skipped_layer`
    left out (a variable it shares with another sublayer stays, there).
    Reads `_trainable_variables`, `_non_trainable_variables`,
    `_seed_generators` and `_layers` as `Layer.variables` reads them.
    """
    variables, seen = [], set()

    def add(candidates):
        for variable in candidates:
            if id(variable) not in seen:
                variables.append(variable)
                seen.add(id(variable))

    add(model._trainable_variables + model._non_trainable_variables)
    variables += [generator.state for generator in model._seed_generators]
    for layer in model._layers:
        if layer is not skipped_layer:
            add(layer.variables)
    return variables


def keras_mask(tensor):
    """The Keras mask a layer's output carries (e.g. after `Embedding(mask_zero=True)`), or None.

    `keras.src.backend.get_keras_mask`: Keras keeps masks as a tensor
    attribute and reads them the same way in its own losses and metrics.
    """
    from keras.src.backend import get_keras_mask

    return get_keras_mask(tensor)


def scale_loss_for_distribution(loss):
    """Divides `loss` by the replicas of the current `tf.distribute` strategy.

    Keras's TensorFlow trainer does this before taking gradients (the replicas'
    gradients are summed); `keras.src.losses.loss` is its only home.
    """
    from keras.src.losses.loss import scale_loss_for_distribution as scale

    return scale(loss)


def keras_home():
    """The folder this process's Keras caches downloads in (`keras.utils.get_file`).

    `keras.src.backend.config.keras_home`: KERAS_HOME or ~/.keras as read when
    Keras was imported, or /tmp/.keras when that is not writable.
    """
    from keras.src.backend.config import keras_home as home

    return home()


def resnet50_notop_weights_source(file_name):
    """`(url, file_hash)` Keras uses for `ResNet50(weights="imagenet", include_top=False)`.

    From `keras.src.applications.resnet`, so keras_kd fetches the very file
    Keras would, and can say where it is cached.
    """
    from keras.src.applications import resnet

    return resnet.BASE_WEIGHTS_PATH + file_name, resnet.WEIGHTS_HASHES["resnet50"][1]


def torch_device():
    """The torch device Keras places new tensors on ("cuda:0", "cpu", ...).

    `keras.src.backend.torch.core.get_device`: Keras's own choice (it honours
    `keras.device` scopes), which `torch` alone cannot tell.
    """
    from keras.src.backend.torch import core

    return core.get_device()


def public_optimizer_module(module):
    """The public module for an optimizer's serialized `module` entry.

    Keras records its optimizers under their backend classes
    (`keras.src.backend.torch.optimizers...`), which another backend cannot
    import; `keras.optimizers` loads everywhere.
    """
    if str(module).startswith("keras.src.backend."):
        return "keras.optimizers"
    return module


def loss_function_arguments(loss):
    """The keyword arguments a Keras loss passes to its loss function, e.g. `from_logits`.

    `LossFunctionWrapper._fn_kwargs`: the built-in losses (and any
    `LossFunctionWrapper`) keep there the arguments they call their function
    with; `{}` for a loss that keeps none.
    """
    return dict(getattr(loss, "_fn_kwargs", None) or {})


def output_in_graph(model, layer):
    """The output of `layer`'s call inside the functional `model`'s graph, or None if no call is in it.

    `layer.output` is the output of the layer's first call, and for a nested
    functional model (a KerasHub classifier's backbone) its own output
    tensor: a model built on that holds a second copy of the nested graph,
    or is not connected to `model`'s inputs at all. Reads `Function._nodes` (keys made by
    `keras.src.ops.function.make_node_key`; a Sequential's graph is its
    `_functional`), `Operation._inbound_nodes` and `Node.output_tensors`, as
    `Operation.output` and `Functional.get_config` read them. The first of
    several calls in the graph, as `layer.output`.
    """
    import keras
    from keras.src.ops.function import make_node_key

    nodes = (model._functional if isinstance(model, keras.Sequential) else model)._nodes
    for index, node in enumerate(layer._inbound_nodes):
        if make_node_key(layer, index) in nodes:
            outputs = node.output_tensors
            return outputs[0] if len(outputs) == 1 else outputs
    return None


def functional_graph(model):
    """The `Functional` graph of `model`: the model itself, or a Sequential's `_functional`; None for a subclassed one."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    return model if isinstance(model, Functional) else None


def replay_graph(graph, call):
    """Calls every layer of the functional `graph` again, on its own inputs, as `call(layer, *args, **kwargs)`.

    Returns the outputs, in the structure of `graph.output`. The layers get a
    new symbolic call each (as when a model is called on an Input), so a
    `keras.Model` built on what `call` returns runs those layers once.
    Reads `Function._run_through_graph`, the loop `Functional.call` runs.
    """
    return graph._run_through_graph(graph.inputs, operation_fn=lambda layer: layer, call_fn=call)


def is_validation_within_fit(evaluate_kwargs):
    """Whether `evaluate(**evaluate_kwargs)` is `fit`'s own validation pass.

    Keras's `fit` calls `evaluate(..., _use_cached_eval_dataset=True)` on the
    validation data it has already adapted (and keras_kd has checked).
    """
    return bool(evaluate_kwargs.get("_use_cached_eval_dataset"))


class TensorBoardOnlyWithItsCallback:
    """Mixin for a `keras_tuner.Tuner`: a trial's TensorBoard folder only for a TensorBoard callback.

    Keras Tuner 1.4.8's `Tuner._configure_tensorboard_dir` imports
    tensorboard for every trial on the TensorFlow backend, even without a
    TensorBoard callback, and TensorFlow 2.21 no longer installs it. This
    override of that private method calls it only where a TensorBoard
    callback needs it.
    """

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        if any(type(callback).__name__ == "TensorBoard" for callback in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)


class SymbolicBuildFromOneReplica:
    """Mixin for a `keras.Model`: under `tf.distribute`, builds from one replica's part of the first batch.

    Before the first step, Keras's TensorFlow trainer (`_maybe_symbolic_build`)
    averages the first batch over the replicas with one `strategy.reduce` of
    the whole batch structure, which `tf.distribute.MultiWorkerMirroredStrategy`
    with several workers refuses: it reduces one value at a time, so every
    `fit` fails before training. The build reads only the batch's shapes and
    dtypes, which each replica's part has too, so this override builds from
    this process's first replica's part and never reduces.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            import keras
            import tensorflow as tf

            for _, _, batches in iterator:
                data_batch = next(batches)
                break
            leaves = keras.tree.flatten(
                keras.tree.map_structure(lambda value: isinstance(value, tf.distribute.DistributedValues), data_batch)
            )
            if all(leaves):
                local_part = self._distribute_strategy.experimental_local_results
                data_batch = keras.tree.map_structure(lambda value: local_part(value)[0], data_batch)
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def rebuild_grid_order(oracle):
    """Rebuilds a reloaded `keras_tuner.oracles.GridSearchOracle`'s grid bookkeeping from its trials.

    Keras Tuner 1.4.8 keeps the grid order of the trials (`_ordered_ids`,
    sorted by `_compare`) and the queue of trials whose successor may still
    be untried (`_populate_next`) in memory only, so a GridSearch resumed
    with `overwrite=False` fails at its first new trial with a `KeyError`
    (keras-team/keras-tuner#1055). Both follow from `oracle.trials`.
    """
    import functools

    tried = sorted(
        (trial for trial in oracle.trials.values() if trial.hyperparameters.values),
        key=functools.cmp_to_key(lambda a, b: oracle._compare(a.hyperparameters.values, b.hyperparameters.values)),
    )
    oracle._ordered_ids = type(oracle._ordered_ids)()
    for trial in tried:
        oracle._ordered_ids.insert(trial.trial_id)
    # Re-queuing a trial whose successor was tried is harmless: the oracle
    # skips it.
    oracle._populate_next = list(oracle.end_order)
