"""``sm.esf``: the empirical score function of the score-smoothing paper ([SM], Sec. 2-3.4)."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ... import testing as sft
from ...testing import tolerances as tol
from ...testing.tolerances import Tolerance
from .. import _plot
from ..record import Context, Record
from ..registry import claim
from ..verdicts import corrected
from ._common import Measured

EPS = np.finfo(float).eps
FIX_19 = "(19) and (22) hold for i in {2, ..., d} (d = dimension), not i in {2, ..., n}"


def esf_tolerance(x, y, t) -> Tolerance:
    """(xhat - x)/t loses ~ eps (max|x| + max|y|) / t to cancellation in any float64 evaluation
    (the paper's formula and the toolkit's alike); allow 8 times that on top of EXACT_FLOAT64."""
    atol = 8 * EPS * (np.abs(x).max() + np.abs(y).max()) / t
    return Tolerance("ESF_CANCELLATION", tol.EXACT_FLOAT64.rtol, atol,
                     "EXACT_FLOAT64 plus the cancellation 8 eps (|x| + |y|)/t of (xhat - x)/t")


def xhat_eq14(x1, y, t):
    """[SM] eq. (14) written out literally with Gaussian pdfs (std sqrt(t)): sum y p / sum p."""
    p = stats.norm.pdf(np.asarray(x1)[:, None] - np.asarray(y)[None, :], scale=np.sqrt(t))
    return (p @ y) / p.sum(axis=1)


def eq19(x, y1, n: int, t: float, index_range: str) -> np.ndarray:
    """The ESF of (19) at points x (N, d) for n training points [y1_k, 0, ..., 0].

    ``index_range="paper"``: the paper's literal i in {2, ..., n}; coordinates it does not
    specify (i > n when n < d) are NaN. ``"fixed"``: i in {2, ..., d}. Coordinates the literal
    range names beyond d do not exist; :func:`measure_esf` counts them as a failure.
    """
    n_pts, d = x.shape
    out = np.full((n_pts, d), np.nan)
    out[:, 0] = (xhat_eq14(x[:, 0], y1, t) - x[:, 0]) / t
    last = min(n, d) if index_range == "paper" else d
    out[:, 1:last] = -x[:, 1:last] / t
    return out


def measure_esf(make_path, rng) -> Measured:
    """The toolkit's ESF (score of the diffused empirical law) and posterior mean against the
    paper's formulas (6), (14), (19) written out with scipy's normal pdf, plus central
    differences of the toolkit's logpdf and tanh(x/t) as independent routes.

    ``make_path(points)`` returns the path of the empirical law on ``points`` under dX = dW (the
    toolkit's ``EmpiricalDistribution(points).path(VE())``; tests pass wrong ones). Aggregates:
    ``eq6_*``, ``eq14_*`` (the paper's formulas as written), ``eq19_paper_*`` (the literal index
    range i in {2..n}) and ``eq19_fixed_*`` (i in {2..d}).
    """
    out = Measured()
    x = np.linspace(-2.5, 2.5, 201)
    # (6): S = {-1, 1}
    path = make_path(np.array([[-1.0], [1.0]]))
    for t in (0.02, 0.1, 0.5):
        p_m, p_p = stats.norm.pdf(x - 1, scale=np.sqrt(t)), stats.norm.pdf(x + 1, scale=np.sqrt(t))
        xhat = (p_m - p_p) / (p_m + p_p)
        esf = (xhat - x) / t
        where = f"(6), t={t}"
        e_k = out.add("eq6_score_vs_paper", sft.asserts.compare(
            path.score(x[:, None], t)[:, 0], esf).excess(esf_tolerance(x, np.array([1.0]), t)), where)
        e_p = out.add("eq6_posterior_mean_vs_xhat", sft.asserts.compare(
            path.posterior_mean(x[:, None], t)[:, 0], xhat).excess(tol.EXACT_FLOAT64), where)
        e_tanh = out.add("eq6_tanh_vs_xhat", sft.asserts.compare(np.tanh(x / t), xhat)
                         .excess(tol.EXACT_FLOAT64), where)
        fd = sft.finite_difference_gradient(lambda z: path.logpdf(z, t), x[:, None])[:, 0]
        e_fd = out.add("eq6_paper_vs_fd_of_logpdf", sft.asserts.compare(esf, fd).excess(tol.SCORE_FD), where)
        out.rows.append({"eq": "(6)", "t": t, "score_vs_paper": e_k, "posterior_mean_vs_xhat": e_p,
                         "tanh_vs_xhat": e_tanh, "fd_vs_paper": e_fd})
    # (14): n points spaced uniformly on [-D, D]
    for n, D, t in ((3, 1.0, 0.05), (6, 2.0, 0.1), (11, 2.0, 0.02)):
        y = np.linspace(-D, D, n)
        path = make_path(y[:, None])
        xhat = xhat_eq14(x, y, t)
        where = f"(14), n={n}, D={D}, t={t}"
        e_k = out.add("eq14_score_vs_paper", sft.asserts.compare(
            path.score(x[:, None], t)[:, 0], (xhat - x) / t).excess(esf_tolerance(x, y, t)), where)
        e_p = out.add("eq14_posterior_mean_vs_xhat", sft.asserts.compare(
            path.posterior_mean(x[:, None], t)[:, 0], xhat).excess(tol.EXACT_FLOAT64), where)
        out.rows.append({"eq": "(14)", "n": n, "D": D, "t": t, "score_vs_paper": e_k,
                         "posterior_mean_vs_xhat": e_p})
    # (19): n points on the first axis in d dimensions, both index ranges
    for n, d in ((3, 5), (5, 3)):
        y1 = np.linspace(-1.5, 1.5, n)
        pts = np.zeros((n, d))
        pts[:, 0] = y1
        t = 0.1
        path = make_path(pts)
        xx = rng.uniform(-2, 2, size=(64, d))
        score = path.score(xx, t)
        fd = sft.finite_difference_gradient(lambda z: path.logpdf(z, t), xx)
        where = f"(19), n={n}, d={d}, t={t}"
        row = {"eq": "(19)", "n": n, "d": d, "t": t}
        for version in ("paper", "fixed"):
            formula = eq19(xx, y1, n, t, version)
            e_k = out.add(f"eq19_{version}_score_vs_formula", sft.asserts.compare(score, formula)
                          .excess(esf_tolerance(xx, y1, t)), where)
            e_fd = out.add(f"eq19_{version}_formula_vs_fd_of_logpdf", sft.asserts.compare(formula, fd)
                           .excess(tol.SCORE_FD), where)
            row[f"{version}: score_vs_formula"] = e_k
            row[f"{version}: formula_vs_fd"] = e_fd
        named_missing = max(0, n - d)  # coordinates d+1..n that the literal range names
        out.add("eq19_paper_names_only_existing_coordinates",
                math.inf if named_missing else 0.0, where)
        unspecified = max(0, d - n)
        row["paper: coordinates named that do not exist"] = named_missing
        row["paper: coordinates left unspecified (NaN)"] = unspecified
        out.rows.append(row)
    return out


def _draw_esf(path_png, make_path):
    plt = _plot.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    x = np.linspace(-2.5, 2.5, 201)
    path = make_path(np.array([[-1.0], [1.0]]))
    for t in (0.02, 0.1, 0.5):
        ax.plot(x, path.score(x[:, None], t)[:, 0], label=f"toolkit score, t={t}")
        ax.plot(x[::8], (np.tanh(x[::8] / t) - x[::8]) / t, "k.", ms=3)
    ax.set(ylim=(-20, 20), xlabel="x", ylabel="ESF",
           title="[SM] (6): S = {-1, 1}; dots: (tanh(x/t) - x)/t")
    ax.legend(fontsize=7)
    _plot.save(fig, path_png)


def _toolkit_path(points):
    from ...models import EmpiricalDistribution
    from ...processes import VE

    return EmpiricalDistribution(points).path(VE())


@claim("sm.esf", title="ESF = (xhat_t(x) - x)/t with xhat the posterior mean ([SM] (6), (14), (19))",
       source="[SM] eq. (6), (14), (19)")
def check_esf(ctx: Context) -> Record:
    """The empirical score of p_t^(n) under dX = dW against the paper's closed forms.

    Routes for the same function: the toolkit's path score (numba kernel), central differences
    of the toolkit's logpdf, and the paper's formulas written out with scipy's normal pdf ((6) for
    S = {-1, 1}, (14) for n uniform points, (19) for points on the first axis in d dimensions);
    (6) also equals tanh(x/t). (19) is computed twice: with the paper's literal index range
    i in {2..n} (coordinates it leaves unspecified are NaN, coordinates it names that do not
    exist count as a failure) and with i in {2..d}; the verdict helper compares both.
    """
    m = measure_esf(_toolkit_path, ctx.rng())
    ctx.figure("esf", _draw_esf, _toolkit_path)
    shared = {k: w for k, w in m.excess.items() if k.startswith(("eq6", "eq14"))}
    paper = {**shared, **{k: w for k, w in m.excess.items() if k.startswith("eq19_paper")}}
    fixed = {**shared, **{k: w for k, w in m.excess.items() if k.startswith("eq19_fixed")}}
    return ctx.verdict(
        corrected(paper=paper, fixed=fixed, fix=FIX_19),
        compared=[("EmpiricalDistribution(S).path(VE()).score(x, t)", "[SM] (6), (14), (19) with scipy pdfs"),
                  ("path.posterior_mean(x, t)", "xhat of [SM] (6), (14)"),
                  ("[SM] (6), (19) formulas", "central differences of path.logpdf"),
                  ("tanh(x/t)", "xhat of [SM] (6)")],
        claimed={"ESF": "(xhat_t(x) - x)/t, xhat from (6)/(14); (19): d_i log p = -x_i/t for i in {2..n}"},
        tolerance={"closed forms": tol.EXACT_FLOAT64.as_dict(),
                   "ESF values": "EXACT_FLOAT64 + 8 eps (max|x| + max|y|)/t (cancellation in (xhat - x)/t)",
                   "finite differences": tol.SCORE_FD.as_dict()},
        inputs={"x_grid": [-2.5, 2.5, 201], "process": "VE() (dX = dW)", "seed": ctx.seed},
        rows=m.rows,
        notes="n = number of training points, d = dimension. For n > d the literal range names "
              "coordinates that do not exist; for n < d it leaves coordinates n+1..d unspecified, "
              "which the computation shows also equal -x_i/t. Eq. (22) repeats the same range.")
