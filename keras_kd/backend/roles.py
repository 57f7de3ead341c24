"""The two roles a backend plays in keras_kd, each a base class holding the defaults.

- `GradientMechanics`: where gradients are taken in a train step, how a
  step function Keras made is wrapped, and how a failed call leaves the
  variables.
- `WeightVersions`: tokens that prove a weight's value unchanged, for the
  teacher cache's fingerprints.

A backend overrides a role's methods in a subclass under
`keras_kd/backend/<name>/`. A subclass may only override what its role
declares: a public method the role lacks (a misspelled override, which
would never be called) fails when the class is created.
"""

import abc
import contextlib
import typing


class Role:
    """Base of the roles; checks that a backend's subclass overrides only what its role declares.

    A role is a direct subclass of `Role`: its public methods are what a
    backend may override. Private helpers (`_name`) of a backend's subclass
    are its own.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if Role in cls.__bases__:
            return
        role = next(base for base in cls.__mro__ if Role in base.__bases__)
        declared = {name for base in cls.__mro__[1:] if issubclass(base, Role) for name in vars(base)}
        undeclared = sorted(name for name in vars(cls) if not name.startswith("_") and name not in declared)
        if undeclared:
            methods = ", ".join(sorted(name for name in vars(role) if not name.startswith("_")))
            raise TypeError(
                f"{cls.__qualname__} defines {', '.join(undeclared)}, which its role {role.__name__} does not "
                f"declare, so keras_kd would never call it. {role.__name__} declares: {methods}."
            )


class GradientMechanics(Role, abc.ABC):
    """Where gradients are taken: the steps Keras's trainer of this backend calls.

    The steps only arrange *where* gradients are computed; every loss,
    metric and schedule is computed by the Distiller in `keras.ops`
    (`prepare_batch`, `compute_step_loss`, `update_metrics`).
    """

    @abc.abstractmethod
    def train_step(self, distiller, *args):
        """One training step, with the signature this backend's Keras trainer calls it with.

        JAX's is stateless: `(distiller, state, data)`, returning
        `(logs, state)`; the others take `(distiller, data)` and return the
        logs.
        """

    @abc.abstractmethod
    def test_step(self, distiller, *args):
        """One evaluation step, with the signature of `train_step`."""

    def checked_step_function(self, function, checks, training):
        """Wraps a step function Keras made so `checks` (a `fit_checks.StepChecks`) run first.

        The wrapper runs outside the step, which may be compiled:
        TensorFlow's step function takes the iterator (its batches stay
        inside the graph and their labels are checked in the data pipeline),
        torch's takes the data.
        """

        def checked(data):
            if training:
                checks.before_train_call()
            outputs = function(data)
            checks.completed_calls += 1
            return outputs

        return checked

    @contextlib.contextmanager
    def keeping_state(self, distiller, checks):
        """A context in which a failed fit/evaluate leaves the Distiller's variables usable.

        The trainer keeps the variables attached throughout. A step function
        that failed before completing a call is dropped, so the next `fit`
        makes a new one: TensorFlow's may have half-traced its first call,
        and would refuse to create the variables that call creates on a
        later one.
        """
        calls = checks.completed_calls
        try:
            yield
        except BaseException:
            if checks.completed_calls == calls:
                distiller.train_function = distiller.test_function = distiller.predict_function = None
            raise


class WeightVersions(Role):
    """Tokens that prove a weight's value unchanged, for the teacher cache's fingerprints."""

    def value_version(self, variable):
        """A token of `variable`'s current value that proves it unchanged, or None.

        Two tokens of one variable are `same_version` only if its value has
        not changed between them. None where the backend offers nothing
        cheap: the caller then reads the value itself.
        """
        return None

    def same_version(self, token, other):
        """Whether two `value_version` tokens prove the same, unchanged value."""
        if token is None or other is None:
            return False
        (reference, version), (other_reference, other_version) = token, other
        value = reference()
        return value is not None and value is other_reference() and version == other_version

    def kept_frozen_values(self, distiller):
        """True when no step traced so far assigned a variable of the Distiller's teacher.

        Then a finished fit or evaluate left the teacher's values as they
        were, even where the trainer hands them back as new objects (JAX).
        False where that is not recorded (torch keeps each variable's
        tensor, whose version tells).
        """
        return False


class BackendRoles(typing.NamedTuple):
    """One backend's object for each role; each backend package's `ROLES`."""

    gradients: GradientMechanics
    weight_versions: WeightVersions
