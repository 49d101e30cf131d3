"""The exception raised by :mod:`fnlearn.checkpoint` and :mod:`fnlearn.interop`."""


class CheckpointError(ValueError):
    """A checkpoint could not be saved or loaded: a foreign, truncated or corrupted file, a tree with
    an unsupported leaf, or a mismatch with the ``like`` template. The message says which and how to
    fix it. Nothing is returned when it is raised (never a partially loaded tree)."""
