"""fnlearn: a functional, stateless neural-network library in pure NumPy/SciPy."""
from . import tree
from ._types import Layer

__all__ = ["Layer", "tree"]
