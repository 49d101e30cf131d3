"""Gelu: the float32 exact GELU against a float64 reference on a dense grid, the edges, the torch
names for ``approximate``, PyTorch itself in float64, and the lazy import of scipy.special."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import special

import fnlearn as fl

TORCH_REASON = "the comparison peer is torch (pip install torch)"
GRID = np.linspace(-12.0, 12.0, 2_000_001).astype(np.float32)


def _float32_gelu(x, approximate=False):
    y, vjp = fl.Gelu(approximate=approximate).apply({}, x)
    return y, vjp(np.ones_like(y))[1]


def _ulps_of(scale):
    """The spacing of float32 numbers at ``scale``, in float64."""
    return np.spacing(np.abs(scale).astype(np.float32)).astype(np.float64)


def test_float32_exact_gelu_is_within_two_ulps_of_the_float64_reference():
    # Measured on this grid: |y - y64| <= 1.89 ulps of max(|x|, 1) (5.7e-7 absolute), <= 2.34 ulps of
    # y for x >= 0; scipy's float32 erf gives 1.28 and 1.59 ulps, torch's float32 gelu 4.85. The
    # bounds leave room for NumPy's float32 tanh, whose last bit differs between CPUs.
    y, dx = _float32_gelu(GRID)
    assert y.dtype == dx.dtype == np.float32
    x = GRID.astype(np.float64)
    cdf = special.ndtr(x)
    err = np.abs(y - x * cdf)
    assert (err / _ulps_of(np.maximum(np.abs(x), 1.0))).max() <= 2.5
    positive = x >= 0
    assert (err[positive] / _ulps_of(x[positive] * cdf[positive])).max() <= 3.0
    # The derivative Phi(x) + x pdf(x), from the same Phi: measured max error 1.1e-7.
    want = cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    assert np.abs(dx - want).max() <= 2.5e-7


def _fit_gelu_polynomial(degree=6, xmax=6.0, points=1201, iterations=100):
    """How fnlearn's float32 GELU polynomial was made: ``P`` of ``degree`` in ``s = x**2`` with
    ``Phi(x) ~ (1 + tanh(x P(s))) / 2``, fitted in float64 to ``u = atanh(2 Phi - 1)`` on ``[0, xmax]``,
    weighting the error of ``u`` by ``dPhi/du = 2 Phi (1 - Phi)`` and driving the largest weighted
    error down with Lawson's iteration. Returns the coefficients (constant first) and that error."""
    x = np.linspace(0.0, xmax, points)[1:]
    target = np.arctanh(special.erf(x / math.sqrt(2)))
    weight = 2 * special.ndtr(x) * special.ndtr(-x)
    basis = x[:, None] ** (2 * np.arange(degree + 1) + 1)
    lawson = np.full(x.size, 1.0 / x.size)
    for _ in range(iterations):
        w = weight * np.sqrt(lawson)
        coefs = np.linalg.lstsq(basis * w[:, None], target * w, rcond=None)[0]
        err = weight * np.abs(basis @ coefs - target)
        lawson *= err / err.max()
        lawson /= lawson.sum()
    return coefs, float(err.max())


def test_the_float32_gelu_polynomial_is_the_fit_it_claims_to_be():
    from fnlearn.layers.activations import _GELU_P
    coefs, err = _fit_gelu_polynomial()
    x = np.linspace(-8.0, 8.0, 100_001)

    def phi(c):
        return 0.5 * (1 + np.tanh(x * np.polyval(np.asarray(c)[::-1], np.minimum(x * x, 36.0))))

    assert err < 3e-8  # measured 2.89e-8
    assert np.abs(phi(coefs) - phi(_GELU_P)).max() < 1e-9  # measured 2.6e-10: float32 rounding
    assert np.abs(phi(_GELU_P) - special.ndtr(x)).max() < 3e-8  # measured 2.91e-8, in float64


def test_float32_tanh_gelu_matches_its_float64_formula():
    y, dx = _float32_gelu(GRID, approximate=True)
    x = GRID.astype(np.float64)
    t = np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))
    dt = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x) * (1 - t * t)
    assert (np.abs(y - 0.5 * x * (1 + t)) / _ulps_of(np.maximum(np.abs(x), 1.0))).max() <= 2.5
    # 1 - tanh**2 from a float32 tanh near 1 cancels: a few ulps of 1 near |x| = 4.
    assert np.abs(dx - (0.5 * (1 + t) + 0.5 * x * dt)).max() <= 2e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_edges_are_the_limits_without_warnings(dtype, approximate):
    x = np.array([np.inf, 1e30, 40.0, 0.0, -0.0, -40.0, -1e30, np.nan], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, dx = _float32_gelu(x, approximate)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(y[:6], np.array([np.inf, 1e30, 40.0, 0.0, 0.0, 0.0], dtype))
    assert y[6] == 0.0 and np.isnan(y[7])
    np.testing.assert_array_equal(dx[:7], [1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0])
    assert np.isnan(dx[7])


def test_approximate_takes_torch_strings_and_bools():
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    exact, tanh = _float32_gelu(x, False), _float32_gelu(x, True)
    assert not np.array_equal(exact[0], tanh[0])
    for value in ("none", np.bool_(False)):
        np.testing.assert_array_equal(_float32_gelu(x, value)[0], exact[0])
    for value in ("tanh", np.bool_(True)):
        np.testing.assert_array_equal(_float32_gelu(x, value)[0], tanh[0])
    with pytest.raises(ValueError, match=r"Gelu: approximate must be False or 'none'.*got 'erf'"):
        fl.Gelu(approximate="erf")
    with pytest.raises(TypeError, match=r"Gelu: approximate must be .*got 1\."):
        fl.Gelu(approximate=1)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_in_float64(approximate):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    rng = np.random.default_rng(1)
    x = rng.normal(scale=3.0, size=(4, 7, 9))
    dy = rng.normal(size=x.shape)
    y, vjp = fl.Gelu(approximate=approximate).apply({}, x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt, approximate=approximate)
    yt.backward(torch.tensor(dy))
    # torch's Phi = (1 + erf) / 2 cancels for x << 0 (absolute error ~1e-16, and Phi + x pdf cancels
    # again in the gradient); ndtr does not: hence an atol, far below float32's resolution.
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(vjp(dy)[1], xt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_import_fnlearn_does_not_import_scipy_special():
    code = "import fnlearn, sys; print('scipy.special' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
