"""JAX: stateless steps, `jax.value_and_grad` over the student's forward pass.

The Keras JAX trainer passes every variable's value in `state` and expects the
updated values back. Each phase below runs inside a `StatelessScope` mapping
the Distiller's variables to those values, so the backend-independent code
in the Distiller reads and assigns variables as usual.
"""

import contextlib
import weakref

import jax
import keras

from keras_kd.backend import roles


class JaxGradientMechanics(roles.GradientMechanics):
    def __init__(self):
        # The Distillers in which a traced step assigned a teacher weight
        # (`JaxWeightVersions.kept_frozen_values` reads it).
        self.teacher_written = weakref.WeakSet()

    def train_step(self, distiller, state, data):
        trainable, non_trainable, optimizer_values, metrics_values = state
        non_trainable_variables = distiller.non_trainable_variables

        # Schedules and the frozen teacher, outside the differentiated function.
        with self._scope(distiller, trainable, non_trainable, optimizer_values, metrics_values) as scope:
            batch = distiller.prepare_batch(data, training=True)
        non_trainable = _current_values(scope, non_trainable_variables, non_trainable)

        def scaled_loss(trainable_values, non_trainable_values):
            with self._scope(
                distiller, trainable_values, non_trainable_values, optimizer_values, metrics_values
            ) as scope:
                outputs = distiller.compute_step_loss(batch, training=True)
                loss = distiller.optimizer.scale_loss(outputs.loss)
            new_non_trainable = _current_values(scope, non_trainable_variables, non_trainable_values)
            return loss, (outputs, new_non_trainable)

        (_, (outputs, non_trainable)), gradients = jax.value_and_grad(scaled_loss, has_aux=True)(
            trainable, non_trainable
        )
        trainable, optimizer_values = distiller.optimizer.stateless_apply(optimizer_values, gradients, trainable)
        logs, metrics_values = self._update_metrics(
            distiller, batch, outputs, trainable, non_trainable, optimizer_values, metrics_values
        )
        return logs, (trainable, non_trainable, optimizer_values, metrics_values)

    def test_step(self, distiller, state, data):
        trainable, non_trainable, metrics_values = state
        with self._scope(distiller, trainable, non_trainable, (), metrics_values) as scope:
            batch = distiller.prepare_batch(data, training=False)
            outputs = distiller.compute_step_loss(batch, training=False)
        non_trainable = _current_values(scope, distiller.non_trainable_variables, non_trainable)
        logs, metrics_values = self._update_metrics(
            distiller, batch, outputs, trainable, non_trainable, (), metrics_values
        )
        return logs, (trainable, non_trainable, metrics_values)

    def checked_step_function(self, function, checks, training):
        # The checks run before the jitted step: a step that fails after it
        # started has consumed (donated) the state it was given.
        def checked(state, iterator):
            if training:
                checks.before_train_call()
            outputs = function(state, iterator)
            checks.completed_calls += 1
            return outputs

        return checked

    @contextlib.contextmanager
    def keeping_state(self, distiller, checks):
        """Reattaches the variables' values when a fit or evaluate fails.

        Keras's JAX `fit` and `evaluate` detach every variable's value while
        they run (the state travels through the jitted steps) and reattach the
        last step's at the end, which `evaluate` skips on an error and neither
        can do when the first step fails: the variables would then read as
        their initializers. Their values at the start are kept until then.
        The optimizer is built first (as `fit` would), so that its slots are
        among them: Keras drops a variable's initializer once it has a value.
        """
        optimizer = getattr(distiller, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(distiller.trainable_variables)
        variables = _state_variables(distiller)
        values = {id(variable): variable.value for variable in variables}
        calls = checks.completed_calls
        try:
            yield
        except BaseException:
            if checks.completed_calls > calls:
                distiller.jax_state_sync()  # The last completed step's state.
            else:
                for variable in _state_variables(distiller):
                    value = values.get(id(variable))
                    if value is None or _is_deleted(value):
                        # Created during the call (optimizer slots, metrics):
                        # its initial value.
                        value = variable.value
                    variable.assign(value)
            raise

    def _update_metrics(self, distiller, batch, outputs, trainable, non_trainable, optimizer_values, metrics_values):
        with self._scope(distiller, trainable, non_trainable, optimizer_values, metrics_values) as scope:
            logs = distiller.update_metrics(batch, outputs)
        return logs, _current_values(scope, distiller.metrics_variables, metrics_values)

    @contextlib.contextmanager
    def _scope(self, distiller, trainable, non_trainable, optimizer_values, metrics_values):
        mapping = (
            list(zip(distiller.trainable_variables, trainable))
            + list(zip(distiller.non_trainable_variables, non_trainable))
            + list(zip(distiller.optimizer.variables, optimizer_values))
            + list(zip(distiller.metrics_variables, metrics_values))
        )
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            yield scope
        # Python, so once per trace (every step when run eagerly): whether a
        # teacher weight ends the phase with another value than it came in with.
        given = {id(variable): value for variable, value in mapping}
        teacher = distiller.teacher.weights
        if any(scope.get_current_value(weight) is not given.get(id(weight)) for weight in teacher):
            self.teacher_written.add(distiller)


def _current_values(scope, variables, previous_values):
    values = []
    for variable, previous in zip(variables, previous_values):
        current = scope.get_current_value(variable)
        values.append(previous if current is None else current)
    return values


def _state_variables(distiller):
    optimizer = getattr(distiller, "optimizer", None)
    return (
        list(distiller.trainable_variables)
        + list(distiller.non_trainable_variables)
        + (list(optimizer.variables) if optimizer is not None else [])
        + list(distiller.metrics_variables)
    )


def _is_deleted(value):
    return getattr(value, "is_deleted", lambda: False)()
