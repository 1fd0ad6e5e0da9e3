"""sftheory.fusion.frank_wolfe on the simplex: step rules, gaps, agreement with SLSQP."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from sftheory.fusion import frank_wolfe, paper_step, standard_step


def _quadratic(seed=0, k=4):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(6, k))
    b = rng.normal(size=6)
    return (lambda x: 0.5 * float(np.sum((A @ x - b) ** 2)), lambda x: A.T @ (A @ x - b), A, b)


def _slsqp(f, g, k):
    res = minimize(f, np.full(k, 1 / k), jac=g, method="SLSQP", bounds=[(0, 1)] * k,
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                   options={"ftol": 1e-15, "maxiter": 500})
    return res.x, res.fun


def test_step_rules_as_printed():
    assert [paper_step(t) for t in range(5)] == [1.0, 1.0, 2 / 5, 2 / 6, 2 / 7]
    assert [standard_step(t) for t in range(3)] == [1.0, 2 / 3, 2 / 4]


@pytest.mark.parametrize("step,iters,tol", [("away", 2000, 1e-10), ("line-search", 5000, 1e-3),
                                            ("paper", 20000, 1e-3), ("standard", 20000, 1e-3)])
def test_converges_to_slsqp_optimum(step, iters, tol):
    f, g, *_ = _quadratic()
    x_ref, f_ref = _slsqp(f, g, 4)
    res = frank_wolfe(g, np.full(4, 0.25), objective=f, step=step, max_iter=iters,
                      gap_tol=1e-12, f_star=f_ref)
    # the FW gap bounds the primal gap (convexity), up to rounding of f_ref
    assert np.all(res.primal_gaps <= res.gaps + 1e-12)
    assert res.objective[-1] - f_ref < tol
    assert np.all(res.iterates >= 0) and np.allclose(res.iterates.sum(axis=1), 1)
    if step == "away":
        assert res.converged
        np.testing.assert_allclose(res.x, x_ref, atol=1e-5)


def test_primal_gap_bound_standard_rule_on_random_quadratics():
    # h_tau <= 2 L D^2 / (tau + 2) (Jaggi) for the standard rule, L = ||A^T A||, D^2 = 2
    for seed in range(5):
        f, g, A, _ = _quadratic(seed)
        _, f_ref = _slsqp(f, g, 4)
        res = frank_wolfe(g, np.eye(4)[0], objective=f, step="standard", max_iter=200,
                          gap_tol=0.0, f_star=f_ref)
        L = np.linalg.eigvalsh(A.T @ A).max()
        tau = np.arange(1, len(res.primal_gaps))
        assert np.all(res.primal_gaps[1:] <= 2 * L * 2 / (tau + 2) + 1e-9)


def test_iterates_record_and_stop_at_gap_tol():
    f, g, *_ = _quadratic(1)
    res = frank_wolfe(g, [1, 0, 0, 0], objective=f, step="away", gap_tol=1e-6)
    assert res.converged and res.gaps[-1] <= 1e-6
    assert res.iterates.shape == (res.n_iter + 1, 4) and res.steps.shape == (res.n_iter,)
    assert res.objective.shape == (res.n_iter + 1,) and res.primal_gaps is None
    res0 = frank_wolfe(g, [1, 0, 0, 0], step="paper", max_iter=0)
    assert res0.n_iter == 0 and res0.objective is None


def test_validation():
    g = lambda x: x  # noqa: E731
    with pytest.raises(ValueError, match="step"):
        frank_wolfe(g, [0.5, 0.5], step="nope")
    with pytest.raises(ValueError, match="x0"):
        frank_wolfe(g, [0.5, 0.6])
    with pytest.raises(ValueError, match="gap_tol"):
        frank_wolfe(g, [0.5, 0.5], gap_tol=-1)
    with pytest.raises(ValueError, match="max_iter"):
        frank_wolfe(g, [0.5, 0.5], max_iter=-1)
    with pytest.raises(ValueError, match="grad"):
        frank_wolfe(lambda x: np.ones(3), [0.5, 0.5])
    with pytest.raises(ValueError, match="grad"):
        frank_wolfe(lambda x: np.array([np.nan, 0.0]), [0.5, 0.5])
    with pytest.raises(ValueError, match="grad"):
        frank_wolfe(None, [0.5, 0.5])
    with pytest.raises(ValueError, match="f_star"):
        frank_wolfe(g, [0.5, 0.5], f_star=0.0)
    with pytest.raises(ValueError, match="objective"):
        frank_wolfe(g, [0.5, 0.5], objective=3.0)
