"""The error a cache raises when it would feed stale or foreign teacher outputs."""


class CacheMismatchError(ValueError):
    """A cache does not belong to this teacher, these data, or this Distiller."""
