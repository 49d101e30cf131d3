"""The complete state of a :class:`numpy.random.Generator`, as a plain tree a checkpoint can hold.

``rng.bit_generator.state`` alone does not resume a run exactly: ``rng.spawn(n)`` (which
``fl.serial`` uses to give each layer its own generator, e.g. for dropout) derives the children from
the generator's :class:`numpy.random.SeedSequence` (its entropy, spawn key and how many children it
has spawned), and none of that is in ``bit_generator.state``. :func:`generator_state` records both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import CheckpointError

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of ``rng`` as a tree of ints and strings, for :func:`generator_from_state`.

    Args:
        rng: a :class:`numpy.random.Generator`.

    Returns:
        ``{"bit_generator": name, "state": rng.bit_generator.state, "seed_seq": {...} or None}``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> _ = rng.spawn(2)
        >>> twin = generator_from_state(generator_state(rng))
        >>> bool(rng.spawn(1)[0].random() == twin.spawn(1)[0].random()), bool(rng.random() == twin.random())
        (True, True)
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"generator_state: expected a numpy.random.Generator, got "
                        f"{type(rng).__name__}. Create one with np.random.default_rng(seed).")
    bit = rng.bit_generator
    seq = bit.seed_seq
    seed_seq = None
    if isinstance(seq, np.random.SeedSequence):
        entropy = seq.entropy
        seed_seq = {"entropy": entropy if isinstance(entropy, int) or entropy is None
                    else [int(e) for e in entropy],
                    "spawn_key": [int(k) for k in seq.spawn_key], "pool_size": int(seq.pool_size),
                    "n_children_spawned": int(seq.n_children_spawned)}
    return {"bit_generator": type(bit).__name__, "state": bit.state, "seed_seq": seed_seq}


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A new :class:`numpy.random.Generator` in exactly the state recorded by :func:`generator_state`.

    Raises:
        CheckpointError: ``state`` is not such a record (unknown bit generator, malformed state).
    """
    try:
        name, seed_seq = state["bit_generator"], state["seed_seq"]
        if name not in _BIT_GENERATORS:
            raise ValueError(f"unknown bit generator {name!r}; expected one of {_BIT_GENERATORS}")
        seq = None if seed_seq is None else np.random.SeedSequence(
            seed_seq["entropy"], spawn_key=tuple(seed_seq["spawn_key"]),
            pool_size=seed_seq["pool_size"], n_children_spawned=seed_seq["n_children_spawned"])
        bit = getattr(np.random, name)(seq)
        bit.state = state["state"]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(f"generator_from_state: the state is not a record made by "
                              f"generator_state ({type(e).__name__}: {e}). Save generators with "
                              "fnlearn.checkpoint.generator_state(rng).") from None
    return np.random.Generator(bit)
