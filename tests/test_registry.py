"""The property battery over every registered layer and loss (see registry.py).

Each layer is drawn by hypothesis (hyperparameters, dtype, batch, params from its own init, input) and
certified by ``fnlearn.testing.check_layer``: the VJP against float64 finite differences per leaf,
linearity in the cotangent, ``vjp(0) == 0``, determinism, no mutation or aliasing, cotangent structure,
shapes and dtypes, float32/float64 preservation and agreement, init shape == apply shape, and batch
independence / split additivity / permutation equivariance. Kinks are rejected, never reported as
failures. Each loss is certified by ``check_loss_grad`` (finite differences and a Taylor rate).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlearn import testing
from fnlearn.testing import strategies as fst
from registry import LAYERS, LOSSES


@pytest.mark.parametrize("spec", LAYERS, ids=str)
def test_layer_passes_the_property_battery(spec):
    @given(case=fst.layer_cases(spec.factory, feature_shape=spec.feature_shape,
                                x_elements=spec.x_elements, batch=spec.batch,
                                **spec.hyperparams),
           rng=fst.seeds())
    def check(case, rng):
        case.check_layer(train=spec.train, rng=rng if spec.random else None,
                         batch_properties=spec.batch_properties)
    check()


@pytest.mark.parametrize("spec", LOSSES, ids=str)
def test_loss_gradient_is_the_gradient_of_its_value(spec):
    @given(batch=st.integers(1, 4), dtype=fst.float_dtypes(), seed=fst.seeds())
    def check(batch, dtype, seed):
        rng = np.random.default_rng(seed)
        shape = (batch,) + spec.feature_shape
        pred = rng.normal(size=shape).astype(dtype)
        target = spec.target(rng, shape)
        if target.dtype.kind == "f":
            target = target.astype(dtype)
        testing.check_loss_grad(spec.loss, pred, target, seed=seed)
        value, grad = spec.loss(pred, target)
        assert isinstance(value, float) and grad.shape == pred.shape and grad.dtype == pred.dtype
    check()
