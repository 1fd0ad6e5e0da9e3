"""The backend seam: the operations algorithms above the models use, on numpy and torch alike."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from sftheory.backend import get_backend
from sftheory.processes import VP


def _backends():
    out = [("numpy", lambda a: np.asarray(a, dtype=np.float64))]
    try:
        import torch

        out.append(("torch", lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)))
    except ImportError:  # pragma: no cover - torch is installed in CI
        pass
    return out


@pytest.mark.parametrize("name,make", _backends(), ids=lambda v: v if isinstance(v, str) else "")
def test_reductions_match_scipy(name, make):
    a = np.array([[0.0, -1.0, 3.0], [-np.inf, -np.inf, -2.0], [1e3, 1e3, -1e3]])
    x = make(a)
    nx = get_backend(x)
    assert nx.name == name
    np.testing.assert_allclose(np.asarray(nx.to_numpy(nx.logsumexp(x, 1))), logsumexp(a, 1), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(nx.to_numpy(nx.softmax(x, 1))), softmax(a, 1), rtol=1e-15)
    m = make(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(nx.to_numpy(nx.matmul(m, nx.asarray(np.ones(3), like=m))), [3.0, 12.0])


@pytest.mark.parametrize("name,make", _backends(), ids=lambda v: v if isinstance(v, str) else "")
def test_random_numbers_are_seeded_and_follow_the_input(name, make):
    like = make(np.zeros((2, 2)))
    nx = get_backend(like)
    a = nx.standard_normal((50_000, 2), 7, like)
    b = nx.standard_normal((50_000, 2), 7, like)
    c = nx.standard_normal((50_000, 2), 8, like)
    an = nx.to_numpy(a)
    np.testing.assert_array_equal(an, nx.to_numpy(b))
    assert not np.array_equal(an, nx.to_numpy(c))
    assert type(a) is type(like) and a.dtype == like.dtype
    # N(0, 1): mean within 5 standard errors (1/sqrt(n)), variance within 5 SE (sqrt(2/n))
    n = an.size
    assert abs(an.mean()) <= 5 / np.sqrt(n)
    assert abs(an.var() - 1.0) <= 5 * np.sqrt(2.0 / n)
    with pytest.raises(ValueError, match="seed"):
        nx.standard_normal((2,), "seven", like)
    # the processes draw through it: same seed, same path, in x's backend
    x = make(np.ones((4, 2)))
    s1 = VP().sample_transition(x, 0.3, seed=3)
    s2 = VP().sample_transition(x, 0.3, seed=3)
    assert type(s1) is type(x)
    np.testing.assert_array_equal(nx.to_numpy(s1), nx.to_numpy(s2))
