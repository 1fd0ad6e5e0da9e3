r"""Closed forms and sympy derivations of the ODE-vs-SDE paper's App. B.4, H.4 and H.5 ([OS]).

Each printed formula lives in one private arithmetic function (``_eq22``, ``_eq23_prefactor``,
``_eq23_c2``, ``_gaussian_terms``, ``_h4_log_gamma``, ``_h5_exponent``) written with ``+ - * /
**`` only, so the *same* function is evaluated on numpy arrays by the public functions and on
sympy symbols by the derivations ``b4_symbolic``, ``h4_symbolic``, ``h5_symbolic`` (cached with
:func:`functools.lru_cache`; a test that plants an error in a formula clears the caches). The
derivations never read the printed closed forms for their reference side: they integrate the
definitions with sympy.

Reading of the printed text. The paper's extracted text writes ``h_t^{\leftarrow-2}`` and
``g_t^{\leftarrow-2}`` where the squares (h_t^\leftarrow)^2, (g_t^\leftarrow)^2 are meant: in
App. H.4 the same glyphs stand for the drift -f^\leftarrow = (g^\leftarrow)^2 Y / 2 of eq. (3),
and (22) reduces to the known identity only with squares. Everything below reads them as squares.

B.4 (eqs. (22)-(23)): along the exact generative process q_t and the perturbed one q~_t (same
diffusion h, drifts differing by (g^2 + h^2)/2 eps E),

.. math::
    \partial_t \mathrm{KL}(q_t\|\tilde q_t) = -\tfrac{h^2}{2}\mathcal J(q_t\|\tilde q_t)
    + \tfrac{g^2 + h^2}{2}\,\mathbb E\big[\langle -\epsilon\mathcal E_t(Y_t),
      \nabla\log\tfrac{q_t}{\tilde q_t}(Y_t)\rangle\big]                      \quad (22)

    \le \frac{(h^2 + g^2)^2}{8 h^2}\,\epsilon^2\,\mathbb E|\mathcal E_t(Y_t)|^2  \quad (23)

with c^2 = (h^2 + g^2)/(2 h^2) in Young's inequality. 1D Gaussian case (the conventions of
:mod:`sftheory.theory.odesde` with a general g: f = -g^2 x/2, E_t = c(t) grad log p_{T-t}):
q_t = N(0, a), q~_t = N(0, b) with

    da/dt = g^2 (a - 1),   db/dt = (g^2 - (g^2 + h^2)(1 + eps c)/a) b + h^2,

KL = (a/b - 1 - log(a/b))/2, J = (a - b)^2/(a b^2), E<-eps E, grad log q/q~> = eps c (a - b)/(a b),
E|E|^2 = c^2/a.

H.4: for h = alpha g and g_t^2 = beta_0 + (beta_1 - beta_0) t (forward time; VP), the frozen-score
linear SDE over [t_k, t_k + delta_k] (generative time) is solved exactly by

    Y_{k+1} = gamma_k Y_k + (1 + alpha^2)(gamma_k - 1) S_k + sqrt(alpha^2 (gamma_k^2 - 1)) Z_k,
    gamma_k = exp(delta_k (2 beta_0 + (2 t_k - 2T + delta_k)(beta_0 - beta_1)) / 4).

H.5: varpi_t^2 = int_0^t G_t^{-2} G_s^2 g_s^2 ds = 1 - exp(-t^2 (beta_1 - beta_0)/2 - t beta_0).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .._refs import source
from .._validation import check_positive, check_real

__all__ = [
    "b4_kl_rate", "b4_bound", "b4_bound_prefactor", "b4_young_c2", "gaussian_b4_terms",
    "b4_symbolic", "B4Symbolic",
    "h4_gamma", "h4_coefficients", "h4_symbolic", "H4Symbolic",
    "h5_varpi", "h5_symbolic", "H5Symbolic",
    "clear_caches", "max_abs_at",
]


# ---- validation ----------------------------------------------------------------------------------
def _array(x, name, *, nonneg=False, positive=False) -> np.ndarray:
    """x as a float64 array (any shape), finite; >= 0 or > 0 if asked."""
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be a real number or array, got {x!r}")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number or array of them, got {x!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {x!r}")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0, got {x!r}")
    if nonneg and not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0, got {x!r}")
    return arr


def _out(x):
    """A 0-d result as float, arrays as they are."""
    return float(x) if np.ndim(x) == 0 else x


def _schedule(beta_min, beta_max):
    b0 = check_positive(beta_min, "beta_min")
    b1 = check_positive(beta_max, "beta_max")
    if b1 < b0:
        raise ValueError(f"beta_max must be >= beta_min, got beta_min={b0}, beta_max={b1}")
    return b0, b1


# ==== App. B.4 ===================================================================================
def _eq22(h, g, fisher, cross):
    """Right-hand side of [OS] (22) (numbers, arrays or sympy)."""
    return -h ** 2 / 2 * fisher + (g ** 2 + h ** 2) / 2 * cross


def _eq23_prefactor(h, g):
    """The prefactor (h^2 + g^2)^2 / (8 h^2) of [OS] (23), last line."""
    return (h ** 2 + g ** 2) ** 2 / (8 * h ** 2)


def _eq23_c2(h, g):
    """Young's constant c^2 = (h^2 + g^2) / (2 h^2) chosen in [OS] (23)."""
    return (h ** 2 + g ** 2) / (2 * h ** 2)


def _gaussian_terms(a, b, eps, c):
    """(J(q||q~), E<-eps E, grad log q/q~>, E|E|^2) for q = N(0, a), q~ = N(0, b),
    E(x) = -c x / a (1D)."""
    return (a - b) ** 2 / (a * b ** 2), eps * c * (a - b) / (a * b), c ** 2 / a


@source("OS", "App. B.4, eq. (22)", "os.B4")
def b4_kl_rate(h, g, fisher, cross):
    r"""d/dt KL(q_t || q~_t) by [OS] eq. (22).

    .. math:: -\tfrac{h^2}{2}\,\mathcal J + \tfrac{g^2 + h^2}{2}\,
              \mathbb E\langle -\epsilon\mathcal E_t, \nabla\log(q_t/\tilde q_t)\rangle

    ``h`` >= 0 the generative diffusion, ``g`` > 0 the forward one (both at generative time t),
    ``fisher`` = J(q_t || q~_t) >= 0, ``cross`` the expectation above; numbers or arrays
    (broadcast). Source: [OS] App. B.4, eq. (22); checked by claim ``os.B4``.
    """
    h = _array(h, "h", nonneg=True)
    g = _array(g, "g", positive=True)
    fisher = _array(fisher, "fisher", nonneg=True)
    cross = _array(cross, "cross")
    return _out(_eq22(h, g, fisher, cross))


@source("OS", "App. B.4, eq. (23)", "os.B4")
def b4_bound_prefactor(h, g):
    r"""(h^2 + g^2)^2 / (8 h^2), the factor of eps^2 E|E|^2 in [OS] eq. (23); +inf at h = 0.

    Minimal at h = g (value g^2/2): d/dh = (h^4 - g^4)/(4 h^3). Source: [OS] App. B.4, eq. (23);
    claim ``os.B4``.
    """
    h = _array(h, "h", nonneg=True)
    g = _array(g, "g", positive=True)
    with np.errstate(divide="ignore"):
        return _out(np.where(h > 0, _eq23_prefactor(np.where(h > 0, h, 1.0), g), np.inf))


def b4_bound(h, g, eps, err_sq):
    r"""The bound of [OS] eq. (23) on d/dt KL(q_t || q~_t):

    .. math:: \frac{(h^2 + g^2)^2}{8 h^2}\,\epsilon^2\,\mathbb E|\mathcal E_t(Y_t)|^2,

    ``err_sq`` = E|E_t(Y_t)|^2 >= 0 under q_t; +inf at h = 0. Source: [OS] App. B.4, eq. (23).
    """
    eps = _array(eps, "eps")
    err_sq = _array(err_sq, "err_sq", nonneg=True)
    return _out(np.asarray(b4_bound_prefactor(h, g)) * eps ** 2 * err_sq)


@source("OS", "App. B.4, Young's constant c^2 in eq. (23)", "os.B4")
def b4_young_c2(h, g):
    """Young's constant c^2 = (h^2 + g^2) / (2 h^2) of [OS] eq. (23) (h > 0): with it the Fisher
    terms of (22) cancel. Source: [OS] App. B.4, after eq. (23)."""
    h = _array(h, "h", positive=True)
    g = _array(g, "g", positive=True)
    return _out(_eq23_c2(h, g))


def gaussian_b4_terms(a, b, eps, c):
    r"""The expectations of (22)-(23) for q_t = N(0, a), q~_t = N(0, b), E_t(x) = -c x / a:

    (J, cross, err_sq) = ((a - b)^2/(a b^2), eps c (a - b)/(a b), c^2/a).

    ``a``, ``b`` > 0 variances, ``eps``, ``c`` real (numbers or arrays, broadcast). Verified by
    sympy integration over x in :func:`b4_symbolic`. Used by claim ``os.B4``.
    """
    a = _array(a, "a", positive=True)
    b = _array(b, "b", positive=True)
    eps = _array(eps, "eps")
    c = _array(c, "c")
    return tuple(_out(np.asarray(v, dtype=np.float64)) for v in _gaussian_terms(a, b, eps, c))


@dataclass(frozen=True)
class B4Symbolic:
    """What :func:`b4_symbolic` derived (sympy expressions; symbols in ``symbols``).

    ``rate``: d/dt KL(N(0,a) || N(0,b)) along the moment ODEs (chain rule); ``eq22``: the right
    side of (22) with J, cross, E|E|^2 integrated over x by sympy; ``residual22`` = rate - eq22
    (simplified; 0 iff (22) holds); ``terms_residual``: sympy's integrals minus
    :func:`gaussian_b4_terms`' closed forms; ``young_residual``: the middle line of (23) with the
    printed c^2 minus its last line; ``gap`` = bound - rate and ``gap_minus_square`` = gap -
    (g^2+h^2)/(4 c^2) E[(c^2 eps E + grad log q/q~)^2] (0 means the gap is a non-negative square);
    ``dprefactor_dh`` (factored), ``critical_h`` (positive roots), ``second_derivative_at_g``.
    """

    symbols: dict
    rate: sp.Expr
    eq22: sp.Expr
    residual22: sp.Expr
    terms_residual: tuple
    young_residual: sp.Expr
    gap: sp.Expr
    gap_minus_square: sp.Expr
    dprefactor_dh: sp.Expr
    critical_h: tuple
    second_derivative_at_g: sp.Expr


@functools.lru_cache(maxsize=None)
def b4_symbolic() -> B4Symbolic:
    """Derive [OS] (22)-(23) for the 1D Gaussian case with sympy (about 1 s, cached).

    Symbols a, b > 0 (variances of q_t, q~_t), g, h > 0, eps, c real, x real. Source: [OS]
    App. B.4, eqs. (22)-(23); claim ``os.B4``.
    """
    a, b, g, h = sp.symbols("a b g h", positive=True)
    eps, c, x = sp.symbols("epsilon c x", real=True)
    # moment ODEs of q_t = p_{T-t} and of the perturbed process (odesde's (V) with a general g)
    da = g ** 2 * (a - 1)
    db = (g ** 2 - (g ** 2 + h ** 2) * (1 + eps * c) / a) * b + h ** 2
    kl = (a / b - 1 - sp.log(a / b)) / 2
    rate = sp.factor(sp.diff(kl, a) * da + sp.diff(kl, b) * db)
    # Gaussian expectations of (22)-(23): every integrand is a polynomial in x times q, so
    # E[f] = sum_n f_n int x^n q dx with the moments integrated by sympy
    q = sp.exp(-x ** 2 / (2 * a)) / sp.sqrt(2 * sp.pi * a)
    qt = sp.exp(-x ** 2 / (2 * b)) / sp.sqrt(2 * sp.pi * b)
    dlog = sp.cancel(sp.diff(sp.log(q) - sp.log(qt), x))
    E = sp.cancel(c * sp.diff(sp.log(q), x))
    moments = {n: sp.integrate(x ** n * q, (x, -sp.oo, sp.oo)) for n in range(0, 5, 2)}

    def expect(f):
        poly = sp.Poly(sp.expand(f), x)
        return sp.factor(sum(coef * (moments[n] if n % 2 == 0 else 0)
                             for (n,), coef in poly.terms()))

    J, cross, err_sq = expect(dlog ** 2), expect(-eps * E * dlog), expect(E ** 2)
    closed = _gaussian_terms(a, b, eps, c)
    terms_residual = tuple(sp.cancel(u - v) for u, v in zip((J, cross, err_sq), closed))
    eq22 = _eq22(h, g, J, cross)
    residual22 = sp.cancel(rate - eq22)
    c2 = _eq23_c2(h, g)
    middle = -h ** 2 / 2 * J + (g ** 2 + h ** 2) / 2 * (c2 / 2 * eps ** 2 * err_sq + J / (2 * c2))
    bound = _eq23_prefactor(h, g) * eps ** 2 * err_sq
    young_residual = sp.cancel(middle - bound)
    gap = sp.factor(bound - rate)
    square = (g ** 2 + h ** 2) / (4 * c2) * expect((c2 * eps * E + dlog) ** 2)
    gap_minus_square = sp.cancel(gap - square)
    P = _eq23_prefactor(h, g)
    dP = sp.factor(sp.diff(P, h))
    crit = tuple(r for r in sp.solve(sp.Eq(sp.diff(P, h), 0), h) if r.is_positive)
    d2 = sp.cancel(sp.diff(P, h, 2).subs(h, g))
    return B4Symbolic({"a": a, "b": b, "g": g, "h": h, "eps": eps, "c": c, "x": x},
                      rate, eq22, residual22, terms_residual, young_residual, gap,
                      gap_minus_square, dP, crit, d2)


# ==== App. H.4 ===================================================================================
def _h4_log_gamma(beta0, beta1, T, t_k, delta):
    """log gamma_k of [OS] App. H.4 as printed (numbers, arrays or sympy)."""
    return delta * (2 * beta0 + (2 * t_k - 2 * T + delta) * (beta0 - beta1)) / 4


@source("OS", "App. H.4, gamma_k", "os.H4")
def h4_gamma(beta_min, beta_max, T, t_k, delta):
    r"""gamma_k of the exponential-integrator step, [OS] App. H.4 (generative time):

    .. math:: \gamma_k = \exp\Big(\frac{\delta_k\,(2\beta_0 + (2t_k - 2T + \delta_k)
              (\beta_0 - \beta_1))}{4}\Big),

    for g_t^2 = beta_0 + (beta_1 - beta_0) t (``sftheory.processes.VP(beta_min, beta_max)``),
    step [t_k, t_k + delta_k] of generative time in [0, T]. ``t_k``, ``delta`` numbers or arrays
    (broadcast), 0 <= t_k, delta > 0, t_k + delta <= T. Source: [OS] App. H.4; claim ``os.H4``.
    """
    b0, b1 = _schedule(beta_min, beta_max)
    T = check_positive(T, "T")
    t_k = _array(t_k, "t_k", nonneg=True)
    delta = _array(delta, "delta", positive=True)
    if np.any(t_k + delta > T * (1 + 1e-12)):
        raise ValueError(f"need t_k + delta <= T = {T}")
    return _out(np.exp(_h4_log_gamma(b0, b1, T, t_k, delta)))


@source("OS", "App. H.4, one-step formula", "os.H4")
def h4_coefficients(beta_min, beta_max, t_hi, t_lo, c):
    r"""(alpha, beta, sigma) of the exponential-integrator step x -> alpha x + beta S(x, t_hi) +
    sigma xi from forward time ``t_hi`` down to ``t_lo`` for the VP process
    (``VP(beta_min, beta_max)``) and h = c g, by [OS] App. H.4:

    .. math:: \alpha = \gamma_k,\quad \beta = (1 + c^2)(\gamma_k - 1),\quad
              \sigma = c\sqrt{\gamma_k^2 - 1},

    with gamma_k of :func:`h4_gamma` at t_k = T - t_hi, delta_k = t_hi - t_lo (T cancels), and
    gamma - 1, gamma^2 - 1 evaluated with expm1. The same triple, in the same layout, as
    ``sftheory.samplers._core.exponential_coefficients(VP(...), ts, h)`` with t_hi = ts[:-1],
    t_lo = ts[1:] and h = c g (closed form here, Gauss-Legendre there unless c = 1).
    ``t_hi`` > ``t_lo`` >= 0 (numbers or arrays), ``c`` >= 0. Source: [OS] App. H.4; ``os.H4``.
    """
    b0, b1 = _schedule(beta_min, beta_max)
    t_hi = _array(t_hi, "t_hi", nonneg=True)
    t_lo = _array(t_lo, "t_lo", nonneg=True)
    c = check_real(c, "c")
    if c < 0:
        raise ValueError(f"c must be >= 0 (h = c g), got {c}")
    if not np.all(t_hi > t_lo):
        raise ValueError("need t_hi > t_lo (forward times, one step from t_hi down to t_lo)")
    lg = _h4_log_gamma(b0, b1, t_hi, 0.0, t_hi - t_lo)  # t_k = T - t_hi with T = t_hi
    return (_out(np.exp(lg)), _out((1.0 + c * c) * np.expm1(lg)),
            _out(c * np.sqrt(np.expm1(2.0 * lg))))


@dataclass(frozen=True)
class H4Symbolic:
    """What :func:`h4_symbolic` derived: the integrals of the frozen-score linear SDE over one
    step (``log_gamma``, ``score_coef``, ``noise_var``) and their residuals against the printed
    gamma_k, (1 + alpha^2)(gamma_k - 1), alpha^2 (gamma_k^2 - 1) (0 iff App. H.4 holds)."""

    symbols: dict
    log_gamma: sp.Expr
    score_coef: sp.Expr
    noise_var: sp.Expr
    residual_log_gamma: sp.Expr
    residual_score_coef: sp.Expr
    residual_noise_var: sp.Expr


@functools.lru_cache(maxsize=None)
def h4_symbolic() -> H4Symbolic:
    """Integrate [OS] App. H.4's variation-of-constants formula with sympy (about 1 s, cached):
    g^{<-}(u)^2 = beta0 + (beta1 - beta0)(T - u), h = alpha g, step [t_k, t_k + delta]."""
    u, v, T, tk, d, b0, b1, al = sp.symbols("u v T t_k delta beta0 beta1 alpha", positive=True)

    def g2(w):
        return b0 + (b1 - b0) * (T - w)

    log_gamma = sp.integrate(g2(u), (u, tk, tk + d)) / 2
    inner = sp.integrate(g2(v), (v, u, tk + d)) / 2  # (1/2) int_u^{t_{k+1}} g^2
    score = sp.integrate(sp.exp(inner) * (1 + al ** 2) * g2(u) / 2, (u, tk, tk + d))
    noise = sp.integrate(sp.exp(2 * inner) * al ** 2 * g2(u), (u, tk, tk + d))
    lg = _h4_log_gamma(b0, b1, T, tk, d)
    gamma = sp.exp(lg)
    def normal_form(e):
        # expand, then merge products of exponentials: a sum of exp(polynomial) terms, which is
        # 0 here iff the identity holds (and far cheaper than sp.simplify)
        return sp.powsimp(sp.expand(sp.powsimp(sp.expand(e), combine="exp")), combine="exp")

    return H4Symbolic({"T": T, "t_k": tk, "delta": d, "beta0": b0, "beta1": b1, "alpha": al},
                      log_gamma, score, noise,
                      sp.expand(log_gamma - lg),
                      normal_form(score - (1 + al ** 2) * (gamma - 1)),
                      normal_form(noise - al ** 2 * (gamma ** 2 - 1)))


# ==== App. H.5 ===================================================================================
def _h5_exponent(t, beta0, beta1):
    """The exponent -t^2 (beta1 - beta0)/2 - t beta0 of [OS] App. H.5 / eq. (5)."""
    return -t ** 2 * (beta1 - beta0) / 2 - t * beta0


@source("OS", "App. H.5 and eq. (5), varpi_t", "os.H5")
def h5_varpi(t, beta_min, beta_max):
    r"""varpi_t, the standard deviation of X_t given X_0 for the VP-SDE with the linear schedule,
    by [OS] App. H.5 (and eq. (5)):

    .. math:: \varpi_t = \sqrt{1 - \exp\big(-\tfrac12 t^2(\beta_1 - \beta_0) - t\beta_0\big)}.

    ``t`` >= 0 forward time (number or array). Source: [OS] App. H.5, eq. (5); claim ``os.H5``.
    """
    b0, b1 = _schedule(beta_min, beta_max)
    t = _array(t, "t", nonneg=True)
    return _out(np.sqrt(-np.expm1(_h5_exponent(t, b0, b1))))


@dataclass(frozen=True)
class H5Symbolic:
    """What :func:`h5_symbolic` derived: varpi_t^2 = int_0^t G_t^{-2} G_s^2 g_s^2 ds integrated
    by sympy (``varpi_sq``) and its residual against the printed closed form (0 iff it holds)."""

    symbols: dict
    varpi_sq: sp.Expr
    residual: sp.Expr


@functools.lru_cache(maxsize=None)
def h5_symbolic() -> H5Symbolic:
    """Integrate [OS] App. H.5's definition of varpi_t^2 with sympy (well under 1 s, cached):
    g_s^2 = beta0 + (beta1 - beta0) s, G_t = exp(int_0^t g^2/2)."""
    s, u, t, b0, b1 = sp.symbols("s u t beta0 beta1", positive=True)

    def g2(w):
        return b0 + (b1 - b0) * w

    def G(w):
        return sp.exp(sp.integrate(g2(u), (u, 0, w)) / 2)

    varpi_sq = sp.simplify(sp.integrate(sp.simplify(G(s) ** 2 / G(t) ** 2) * g2(s), (s, 0, t)))
    printed = 1 - sp.exp(_h5_exponent(t, b0, b1))
    return H5Symbolic({"t": t, "beta0": b0, "beta1": b1}, varpi_sq,
                      sp.simplify(varpi_sq - printed))


def clear_caches() -> None:
    """Forget the cached derivations (after a formula has been changed, e.g. in a test)."""
    b4_symbolic.cache_clear()
    h4_symbolic.cache_clear()
    h5_symbolic.cache_clear()


def max_abs_at(expr, points, *, digits: int = 30) -> float:
    """max |expr| over ``points`` (dicts symbol -> exact value), evaluated with ``digits``
    significant digits; NaN if any value is not a finite real number."""
    worst = 0.0
    for p in points:
        val = sp.N(expr.subs(p), digits)
        if not val.is_real or not val.is_finite:
            return math.nan
        worst = max(worst, abs(float(val)))
    return worst
