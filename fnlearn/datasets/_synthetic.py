"""Small synthetic data sets generated on the spot (no download), for quick starts and tests."""

from __future__ import annotations

import numpy as np

from .._types import Array


def spirals(n_per_class: int = 100, num_classes: int = 3, *, noise: float = 0.2,
            rng: np.random.Generator) -> tuple[Array, Array]:
    """Interleaved 2-D spirals, one arm per class: a data set no linear model can fit.

    Args:
        n_per_class: points per class.
        num_classes: number of classes (arms).
        noise: standard deviation of the Gaussian jitter added to each arm's angle.
        rng: the random generator.

    Returns:
        ``(x, y)``: float32 points ``(n_per_class * num_classes, 2)`` in roughly ``[-1, 1]`` and int64
        labels ``(n_per_class * num_classes,)``, ordered by class.

    Example:
        >>> import numpy as np
        >>> from fnlearn.datasets import spirals
        >>> x, y = spirals(50, 3, rng=np.random.default_rng(0))
        >>> x.shape, x.dtype, np.bincount(y).tolist()
        ((150, 2), dtype('float32'), [50, 50, 50])
    """
    if n_per_class < 1 or num_classes < 1:
        raise ValueError(f"spirals: n_per_class and num_classes must be positive, got {n_per_class} "
                         f"and {num_classes}.")
    radius = np.tile(np.linspace(0.05, 1.0, n_per_class), num_classes)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    angle = labels * (2 * np.pi / num_classes) + radius * 4.0 + rng.normal(0.0, noise, radius.shape)
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1).astype(np.float32)
    return x, labels.astype(np.int64)
