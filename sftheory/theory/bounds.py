r"""Computable bounds and limits of [OS] Props 3.4-3.6 and App. E-F (``ode-vs-sde-paper.md``).

Conventions as in :mod:`sftheory.theory.odesde`: f = -x/2, g = 1, constant generative h,
generative time t in [0, T] = forward time tau = T - t, [OS] Assumptions 3.1 and 3.3
(m_t I <= Hess U_t <= M_t I, m_t >= 1, m_0 > 1).

Two layers:

* the paper's formulas, written once, on numbers: kappa (16), the constants of (30) and
  Lemma E.3, the bound (17) with C_h (34), the Prop. 3.5 asymptotes, the bound (18), the
  Prop. 3.6 sandwich and the spectral limit of App. F.1;
* their closed forms for Gaussian p0 (1D for (17); d-dimensional for App. F.1/F.2), and the
  exact L of a pulse error for a 1D Gaussian ([OS] (13)).

Typos and ambiguities met (each function says which reading it computes):

* Lemma E.1 (iii)-(iv) write ``e^{-h^{-2} c_V}`` and ``-c_V/ln 2``: no c_V is defined; the
  proof (36) shows c_U of Assumption 3.1 (3) is meant.
* Lemma E.5, the proof of Prop. E.2 and Lemma E.3 print ``M_t^{<-,-2}`` and ``m_t^{<-,-2}``
  where (30) prints M_t^2 and m_t^2. Lemma E.4's derivation (|grad U(x) - grad U(X)|^2 <=
  M^2 |x - X|^2) and the step |x - Y| <= |grad V(x)| / m give M^2 and 1/m^2, the (30) reading
  (``reading="eq30"``, the default). ``reading="literal"`` computes the printed one,
  varsigma = 5 (1/2 + 3/(4 M^2)), C2 = 8 varsigma m^2, C1's last term 20 d M varsigma m^2.
* Prop. 3.6 states L(h) converges to its limit "exponentially fast"; for the Gaussian the
  exact L(h) approaches its limit like 1/h^2 (the factor ((1 + h^2)/h^2)^2 in T_1; for
  c = +-1, L = (1 + 1/h^2)^2 (1 - r^{h^2})^2 / 4 exactly), as the claim ``os.prop36`` measures.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from sftheory._validation import as_float_array, check_positive, check_real, check_spd

__all__ = [
    "kappa", "varsigma", "xi", "C1", "C2", "C1_limit_lemmaE3", "bound17", "bound17_log",
    "prop35_L0_asymptote", "prop35_Lh_bound", "gaussian_prop35_Lh_asymptote", "bound18",
    "prop36_sandwich", "spectral_limit", "hermite_spectrum_gaussian",
    "gaussian_spectral_limit_nd", "gaussian_bound18_nd", "gaussian_fisher_nd",
    "gaussian_sigma_sq", "gaussian_pulse_L", "gaussian_pulse_log_L", "Bound17Gaussian",
    "gaussian_bound17", "appF2_identity", "READINGS",
]

READINGS = ("eq30", "literal")


def _check_reading(reading):
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
    return reading


def _check_h(h, *, positive=True):
    h = check_real(h, "h")
    if h < 0 or (positive and h == 0):
        raise ValueError(f"h must be {'> 0' if positive else '>= 0'}, got {h}")
    return h


def _check_dim(d):
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    return int(d)


def _check_nonneg(x, name):
    x = check_real(x, name)
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    return x


# ================================================================ paper formulas on numbers =====
def kappa(m, h):
    r"""kappa = (1 + h^{-2}) m - h^{-2}, the Hessian lower bound of V ([OS] eq. (16)).

    ``m`` > 0 (a number), ``h`` > 0.
    """
    m = check_positive(m, "m")
    h = _check_h(h)
    u = 1.0 / (h * h)
    return (1.0 + u) * m - u


def varsigma(M, *, reading="eq30"):
    r"""varsigma_t = 5 (1/2 + 3 M_t^2 / 4) ([OS] eq. (30)).

    ``reading="literal"``: Lemma E.5's printed 5 (1/2 + 3 M^{-2}/4) (a typo, see the module
    docstring).
    """
    M = check_positive(M, "M")
    if _check_reading(reading) == "literal":
        return 5.0 * (0.5 + 0.75 / (M * M))
    return 5.0 * (0.5 + 0.75 * M * M)


def xi(dlogZ, d, M, X_norm):
    r"""xi_t = |d/dt log Z_{V_t}| + 5 d (1 + M_t)/2 + (5/2) |X_t|^2 ([OS] eq. (30), Lemma E.5)."""
    dlogZ = check_real(dlogZ, "dlogZ")
    d = _check_dim(d)
    M = check_positive(M, "M")
    X_norm = _check_nonneg(X_norm, "X_norm")
    return abs(dlogZ) + 2.5 * d * (1.0 + M) + 2.5 * X_norm ** 2


def C1(dlogZ, d, M, m, X_norm, YX_norm, *, reading="eq30"):
    r"""C_t^{(1)} = xi_t + 2 varsigma_t |Y_t - X_t|^2 + 20 d M_t varsigma_t / m_t^2 ([OS] eq. (30)).

    ``X_norm`` = |X_t| (the minimiser of U_t), ``YX_norm`` = |Y_t - X_t| (Y_t the minimiser of
    V_t). ``reading="literal"``: the proof of Prop. E.2's printed 20 d M varsigma m^2 with Lemma
    E.5's varsigma (module docstring).
    """
    m = check_positive(m, "m")
    YX_norm = _check_nonneg(YX_norm, "YX_norm")
    vs = varsigma(M, reading=reading)
    last = 20.0 * d * M * vs * (m * m if reading == "literal" else 1.0 / (m * m))
    return xi(dlogZ, d, M, X_norm) + 2.0 * vs * YX_norm ** 2 + last


def C2(M, m, *, reading="eq30"):
    r"""C_t^{(2)} = 8 varsigma_t / m_t^2 = (20 + 30 M_t^2)/m_t^2 ([OS] eq. (30), Prop. 3.4).

    ``reading="literal"``: 8 varsigma m^2 with Lemma E.5's varsigma, as printed in the proof of
    Prop. E.2 (module docstring).
    """
    m = check_positive(m, "m")
    vs = varsigma(M, reading=reading)
    return 8.0 * vs * (m * m if reading == "literal" else 1.0 / (m * m))


def C1_limit_lemmaE3(d, M, m, X_norm):
    r"""lim_{h->oo} C_t^{(1)} = 5d(1 + M)/2 + (5/2)|X|^2 + (50 + 75 M^2) d M / m^2 ([OS] Lemma E.3)."""
    d = _check_dim(d)
    M = check_positive(M, "M")
    m = check_positive(m, "m")
    X_norm = _check_nonneg(X_norm, "X_norm")
    return 2.5 * d * (1.0 + M) + 2.5 * X_norm ** 2 + (50.0 + 75.0 * M * M) * d * M / (m * m)


def bound17_log(C_h, h, exponent):
    r"""log of the bound (17): log C_h + 2 log(1 + h^2) - exponent ([OS] Prop. 3.4, eq. (17)).

    ``exponent`` = int_s^T ((h^2 - C_r^{(2)}) kappa_r - C_r^{(1)}) dr, ``C_h`` from (34).
    """
    C_h = check_positive(C_h, "C_h")
    h = _check_h(h, positive=False)
    exponent = check_real(exponent, "exponent")
    return math.log(C_h) + 2.0 * math.log1p(h * h) - exponent


def bound17(C_h, h, exponent):
    r"""L(h) <= C_h (1 + h^2)^2 exp(-int_s^T ((h^2 - C^{(2)}) kappa - C^{(1)}) dr) ([OS] eq. (17)).

    C_h = (1/2) int (div(p_s E))^2 / rho_s ([OS] eq. (34)); the bound holds for h >= h_lb
    (Prop. 3.4), which the caller checks. May overflow to inf; use :func:`bound17_log`.
    """
    return math.exp(bound17_log(C_h, h, exponent))


def prop35_L0_asymptote(a, fisher):
    r"""L(0) ~ (a^2/8) int (div(p0 E))^2/p0 for E on [T - a, T], a << 1 ([OS] Prop. 3.5).

    ``fisher`` = int (div(p0 E))^2 / p0.
    """
    a = check_positive(a, "a")
    fisher = _check_nonneg(fisher, "fisher")
    return a * a / 8.0 * fisher


def prop35_Lh_bound(a, h, kappa0, fisher):
    r"""L(h) <~ (1 - e^{-a h^2 kappa0/2})^2 / (2 kappa0^2) int (div(p0 E))^2/p0 ([OS] Prop. 3.5).

    kappa0 = (1 + 1/h^2) m0 - 1/h^2 (16); asymptotic in a << 1, h >> 1.
    """
    a = check_positive(a, "a")
    h = _check_h(h)
    kappa0 = check_positive(kappa0, "kappa0")
    fisher = _check_nonneg(fisher, "fisher")
    return (1.0 - math.exp(-a * h * h * kappa0 / 2.0)) ** 2 / (2.0 * kappa0 ** 2) * fisher


def gaussian_prop35_Lh_asymptote(sigma0, a, h):
    r"""Exact large-h, small-a asymptote of L(h) for p0 = N(0, sigma0^2), E = grad log p on
    [T - a, T] ([OS] Prop. 3.5 setting, App. G): only the second Hermite mode is excited, which
    decays at rate h^2 kappa0 (twice the Poincare rate the paper's bound uses),

        L(h) ~ ((1 + h^2)/h^2)^2 (1 - e^{-a h^2 kappa0})^2 / (4 kappa0^2 sigma0^4).

    Equals the paper's bound for a h^2 << 1 and 1/4 of it for a h^2 >> 1 (this is the inline
    formula of ``os.prop35``; moved here so that every formula lives in one place).
    """
    sigma0 = check_positive(sigma0, "sigma0")
    a = check_positive(a, "a")
    h = _check_h(h)
    k0 = kappa(1.0 / sigma0 ** 2, h)
    H = h * h
    return ((1.0 + H) / H) ** 2 * (1.0 - math.exp(-a * H * k0)) ** 2 / (4.0 * k0 * k0 * sigma0 ** 4)


def bound18(m0, fisher):
    r"""The bound (18) on the large-h limit T = lim L(h): (1/(2 m0^2)) int (div(p0 E_T))^2/p0
    ([OS] Prop. 3.6, eq. (18); for E_T = grad phi it is (19), for phi = log p0 (41))."""
    m0 = check_positive(m0, "m0")
    fisher = _check_nonneg(fisher, "fisher")
    return fisher / (2.0 * m0 * m0)


def prop36_sandwich(T_limit, C, gamma, h, alpha, beta):
    r"""([OS] Prop. 3.6) lower and upper asymptotic bounds on L(h):

        (1 - alpha^2) T - (alpha^{-2} - 1) C gamma^{-1} (1 + h^2) exp(-h^{2-beta} gamma)
          <~ L(h) <~ (1 + alpha^2) T + (1 + alpha^{-2}) C gamma^{-1} (1 + h^2) exp(-h^{2-beta} gamma),

    alpha in (0, 1), beta in (0, 2). Returns (lower, upper).
    """
    T_limit = _check_nonneg(T_limit, "T_limit")
    C = _check_nonneg(C, "C")
    gamma = check_positive(gamma, "gamma")
    h = _check_h(h)
    alpha = check_real(alpha, "alpha")
    beta = check_real(beta, "beta")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 < beta < 2:
        raise ValueError(f"beta must be in (0, 2), got {beta}")
    tail = C / gamma * (1.0 + h * h) * math.exp(-h ** (2.0 - beta) * gamma)
    return ((1 - alpha ** 2) * T_limit - (alpha ** -2 - 1) * tail,
            (1 + alpha ** 2) * T_limit + (1 + alpha ** -2) * tail)


def spectral_limit(alpha, lam) -> float:
    r"""lim_{h->oo} L(h) = (1/2) sum_k (alpha_k / lambda_k)^2 ([OS] App. F.1, limit of T_1).

    (lambda_k, phi_k) the eigenpairs of -K^oo, K^oo mu = Laplacian mu + div(grad U0 mu), in
    L^2(1/p0) (orthonormal phi_k), and div(p0 E_T) = sum_k alpha_k phi_k. ``alpha``, ``lam``:
    1D arrays of equal length, lam > 0.
    """
    alpha = as_float_array(alpha, "alpha", ndim=1)
    lam = as_float_array(lam, "lam", ndim=1)
    if alpha.shape != lam.shape:
        raise ValueError(f"alpha and lam must have the same shape, got {alpha.shape}, {lam.shape}")
    if np.any(lam <= 0):
        raise ValueError("lam must be > 0 (eigenvalues of -K on mean-zero functions)")
    return 0.5 * float(np.sum((alpha / lam) ** 2))


def hermite_spectrum_gaussian(sigma0, e):
    r"""Closed-form spectral data of App. F.1 for p0 = N(0, sigma0^2) in 1D ([OS] App. F.1).

    For E_T(x) = sum_j e_j He_j(x/sigma0) (probabilists' Hermite), the eigenpairs of -K^oo
    (an Ornstein-Uhlenbeck generator) are lambda_k = k/sigma0^2, phi_k = p0 He_k(x/sigma0)/sqrt(k!),
    and d/dx [p0 He_j(x/sigma0)] = -p0 He_{j+1}(x/sigma0)/sigma0, so

        div(p0 E_T) = sum_j alpha_{j+1} phi_{j+1},  alpha_{j+1} = -e_j sqrt((j+1)!)/sigma0.

    Returns (k, alpha_k, lambda_k) for k = 1 .. len(e). E_T = c grad log p0 = -c x/sigma0^2 is
    e = (0, -c/sigma0): alpha_2 = c sqrt(2)/sigma0^2, lambda_2 = 2/sigma0^2.
    """
    sigma0 = check_positive(sigma0, "sigma0")
    e = as_float_array(e, "e", ndim=1)
    k = np.arange(1, e.size + 1)
    fact = np.array([math.factorial(int(j)) for j in k], dtype=np.float64)
    alpha = -e * np.sqrt(fact) / sigma0
    lam = k / sigma0 ** 2
    return k, alpha, lam


def _eig_sigma0(Sigma0):
    S = as_float_array(Sigma0, "Sigma0", ndim=2)
    lam, _ = check_spd(S, "Sigma0")
    return lam


def gaussian_spectral_limit_nd(Sigma0, c_T) -> float:
    r"""App. F.1's limit (1/2) sum_k (alpha_k/lambda_k)^2 for p0 = N(0, Sigma0), E_T = c_T grad log p0.

    In the eigenbasis of Sigma0 (eigenvalues s_i), div(p0 E_T) = c_T p0 sum_i He_2(z_i)/s_i
    excites, per axis, the eigenfunction p0 He_2(z_i)/sqrt 2 of -K^oo with lambda = 2/s_i and
    alpha = c_T sqrt(2)/s_i (:func:`hermite_spectrum_gaussian`), so the limit is d c_T^2/4,
    whatever Sigma0 ([OS] App. F.1 with the Hermite basis).
    """
    s = _eig_sigma0(Sigma0)
    c_T = check_real(c_T, "c_T")
    alphas, lams = [], []
    for si in s:
        _, a, l = hermite_spectrum_gaussian(math.sqrt(si), [0.0, -c_T / math.sqrt(si)])
        alphas.append(a)
        lams.append(l)
    return spectral_limit(np.concatenate(alphas), np.concatenate(lams))


def gaussian_fisher_nd(Sigma0, c_T) -> float:
    r"""int (div(p0 E_T))^2 / p0 for p0 = N(0, Sigma0), E_T = c_T grad log p0: 2 c_T^2 sum_i 1/s_i^2
    (s_i the eigenvalues of Sigma0; E[He_2(z)^2] = 2) ([OS] (18), (41))."""
    s = _eig_sigma0(Sigma0)
    c_T = check_real(c_T, "c_T")
    return 2.0 * c_T ** 2 * float(np.sum(1.0 / s ** 2))


def gaussian_bound18_nd(Sigma0, c_T) -> float:
    r"""Bound (18) for p0 = N(0, Sigma0), E_T = c_T grad log p0: m0 = 1/max_i s_i, so
    (18) = max_i s_i^2 c_T^2 sum_i 1/s_i^2; d c_T^2 for Sigma0 = sigma0^2 I ([OS] (18), App. F.2)."""
    s = _eig_sigma0(Sigma0)
    return bound18(1.0 / float(s.max()), gaussian_fisher_nd(Sigma0, c_T))


# ================================================================ 1D Gaussian closed forms =====
def gaussian_sigma_sq(sigma0, tau):
    """sigma_tau^2 = 1 + (sigma0^2 - 1) e^{-tau} ([OS] (42)); tau may be an array."""
    return 1.0 + (sigma0 * sigma0 - 1.0) * np.exp(-np.asarray(tau, dtype=np.float64))


def _int_inv_sigma_sq(sigma0, tau_s):
    """int_0^{tau_s} dtau / sigma_tau^2 = log(e^{tau_s} sigma_{tau_s}^2 / sigma0^2)."""
    return tau_s + math.log(float(gaussian_sigma_sq(sigma0, tau_s))) - 2.0 * math.log(sigma0)


def _int_sigma_sq(sigma0, tau_s):
    """int_0^{tau_s} sigma_tau^2 dtau."""
    b = sigma0 * sigma0 - 1.0
    return tau_s + b * (-math.expm1(-tau_s))


def _int_sigma_4(sigma0, tau_s):
    """int_0^{tau_s} sigma_tau^4 dtau."""
    b = sigma0 * sigma0 - 1.0
    return tau_s + 2.0 * b * (-math.expm1(-tau_s)) + 0.5 * b * b * (-math.expm1(-2.0 * tau_s))


_KINDS = ("score", "const")


def _check_pulse(sigma0, T, s, h, c, kind):
    sigma0 = check_positive(sigma0, "sigma0")
    T = check_positive(T, "T")
    s = check_real(s, "s")
    if not 0.0 <= s < T:
        raise ValueError(f"s must be in [0, T), got s = {s}, T = {T}")
    h = _check_h(h, positive=False)
    c = check_real(c, "c")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return sigma0, T, s, h, c


def gaussian_pulse_log_L(sigma0, T, s, h, c=1.0, kind="score") -> float:
    r"""log L(h) for a pulse error E(x) delta(t - s), p0 = N(0, sigma0^2) ([OS] eq. (13), App. G).

    ``kind="score"``: E = c grad log p_s^<- = -c x / sigma_{T-s}^2 (second Hermite mode); the
    sensitivity of Var(Y~_T) is u = -(1 + h^2) c G, G = exp(int_s^T 2 a_0), and
    L = (1 + h^2)^2 c^2 G^2 / (4 sigma0^4).
    ``kind="const"``: E = c (a constant drift, first Hermite mode); the mean moves by
    eps (1 + h^2) c sqrt(G) / 2 and L = (1 + h^2)^2 c^2 G / (8 sigma0^2).
    Here log G = tau_s - (1 + h^2) int_0^{tau_s} dtau/sigma_tau^2, tau_s = T - s. -inf if c = 0.
    """
    sigma0, T, s, h, c = _check_pulse(sigma0, T, s, h, c, kind)
    if c == 0.0:
        return -math.inf
    tau_s = T - s
    k = 1.0 + h * h
    logG = tau_s - k * _int_inv_sigma_sq(sigma0, tau_s)
    if kind == "score":
        return 2 * math.log(k) + 2 * math.log(abs(c)) + 2 * logG - math.log(4.0) - 4 * math.log(sigma0)
    return 2 * math.log(k) + 2 * math.log(abs(c)) + logG - math.log(8.0) - 2 * math.log(sigma0)


def gaussian_pulse_L(sigma0, T, s, h, c=1.0, kind="score") -> float:
    """L(h) for a pulse error at time s, 1D Gaussian (exp of :func:`gaussian_pulse_log_L`)."""
    return math.exp(gaussian_pulse_log_L(sigma0, T, s, h, c, kind))


def _log_Z_V(sigma_sq, h):
    """log Z_V, V = (1 + h^-2) U - x^2/(2 h^2), U = -log N(0, sigma_sq) ([OS] (11)-(12))."""
    u = 1.0 / (h * h)
    kap = (1.0 + u) / sigma_sq - u
    return -(1.0 + u) / 2.0 * math.log(2 * math.pi * sigma_sq) + 0.5 * math.log(2 * math.pi) \
        - 0.5 * math.log(kap)


def _dlogZ_dtau(sigma_sq, h):
    """d/dtau log Z_{V_tau} (closed form; = -d/dt in generative time):
    -(1 + u) u (1 - sigma^2)^2 / (2 sigma^2 (1 + u (1 - sigma^2))), u = h^-2 (<= 0 always)."""
    u = 1.0 / (h * h)
    w = 1.0 - sigma_sq
    return -(1.0 + u) * u * w * w / (2.0 * sigma_sq * (1.0 + u * w))


def _C_h_closed(sigma_sq, h, c, kind):
    """C_h = (1/2) int (div(p_s E))^2 / rho_s ([OS] (34)) for the 1D Gaussian, E as in
    :func:`gaussian_pulse_log_L`; inf if the integral diverges (2/sigma^2 <= kappa)."""
    kap = kappa(1.0 / sigma_sq, h)
    A = 2.0 / sigma_sq - kap  # precision of p_s^2 / rho_s
    if A <= 0:
        return math.inf
    pref = 1.0 / (sigma_sq * math.sqrt(A * kap))  # int p^2/rho exp-part normalization
    if kind == "score":  # div(p E) = c p (x^2/sigma^4 - 1/sigma^2)
        moment = 3.0 / (A * A * sigma_sq ** 4) - 2.0 / (A * sigma_sq ** 3) + 1.0 / sigma_sq ** 2
    else:  # div(p E) = c p' = -c p x / sigma^2
        moment = 1.0 / (A * sigma_sq ** 2)
    return 0.5 * c * c * pref * moment


@dataclass(frozen=True)
class Bound17Gaussian:
    """Every constant of [OS] Prop. 3.4 / (17) for p0 = N(0, sigma0^2), a pulse at time s."""

    sigma0: float
    T: float
    s: float
    h: float
    c: float
    kind: str
    reading: str
    c_U: float          # min_x U0(x) - x^2/2 (Assumption 3.1 (3)), = log(sqrt(2 pi) sigma0)
    h0_half: float      # h0(1/2) of Lemma E.1 (iii): Z_{V_0} >= 1/2 for all h >= h0
    C2_sup: float       # sup_{t in [s, T]} C_t^{(2)}
    h_lb: float         # Prop. 3.4's lower bound on h
    h_ok: bool          # h >= h_lb
    rho_over_p_sup: float  # exact sup_x rho_0/p_0 (paper's (29): <= 4)
    C_h: float          # (34)
    exponent: float     # int_s^T ((h^2 - C2) kappa - C1) dr
    log_bound: float    # log of (17)

    @property
    def bound(self) -> float:
        return math.exp(self.log_bound) if self.log_bound < 700 else math.inf


def _h0_half(sigma0):
    """h0(1/2) of [OS] Lemma E.1 (iii) for p0 = N(0, sigma0^2): the smallest h0 with
    Z_{V_0}(h) >= 1/2 for every h >= h0. log Z_{V_0} = f(u), u = h^-2, f convex with f(0) = 0,
    so h0 = u1^{-1/2} for the first root u1 of f = -log 2 (0 if none on (0, 4])."""
    from scipy.optimize import brentq

    s2 = sigma0 * sigma0

    def f(u):
        return -u / 2 * math.log(2 * math.pi * s2) - 0.5 * math.log1p(u * (1 - s2)) + math.log(2.0)

    grid = np.linspace(0.0, 4.0, 4001)
    vals = np.array([f(u) for u in grid])
    bad = np.nonzero(vals < 0)[0]
    if bad.size == 0:
        return 0.0
    i = bad[0]
    u1 = brentq(f, grid[i - 1], grid[i], xtol=1e-14)
    return 1.0 / math.sqrt(u1)


def gaussian_bound17(sigma0, T, s, h, c=1.0, kind="score", reading="eq30") -> Bound17Gaussian:
    r"""The bound (17) of [OS] Prop. 3.4 for p0 = N(0, sigma0^2), every constant in closed form.

    Pulse error E(x) delta(t - s) with E as in :func:`gaussian_pulse_log_L` (``kind``). Here
    U_t = x^2/(2 sigma^2) + log(sqrt(2 pi) sigma), sigma^2 = sigma_{T-t}^2, so d = 1,
    m_t = M_t = 1/sigma^2, X_t = Y_t = 0, kappa_t = (1 + h^-2)/sigma^2 - h^-2 (16);
    C2 = 30 + 20 sigma^4 and C1 = |d log Z_V/dt| + 5/2 + 5/(2 sigma^2) + 50 sigma^2 + 75/sigma^2
    ((30), ``reading="eq30"``); int_s^T |d log Z_V/dt| = |log Z_V(tau=0) - log Z_V(tau=T-s)|
    (d log Z_V/dtau <= 0 throughout). The remaining integrals of sigma^{-2}, sigma^2, sigma^4
    over tau in [0, T - s] are elementary. c_U = log(sqrt(2 pi) sigma0) (sigma0 <= 1; for
    sigma0 > 1 Assumption 3.1 (3) fails and c_U = -inf), h0(1/2) from Lemma E.1 (iii) (with
    c_V read as c_U), h_lb = max{1/2, h0(1/2), sqrt(max{0, -c_U/ln 2, sup C2})} (Prop. 3.4),
    C_h from (34). ``reading="literal"``: the printed M^{-2}, m^{-2} variants (module docstring),
    integrated by quadrature.

    Prop. 3.4 assumes sigma0 < 1 (m_0 > 1, m_t >= 1); the function computes for any sigma0 > 0
    and h > 0 and reports ``h_ok``.
    """
    sigma0, T, s, h, c = _check_pulse(sigma0, T, s, h, c, kind)
    if h == 0:
        raise ValueError("h must be > 0 for the bound (17)")
    reading = _check_reading(reading)
    tau_s = T - s
    H = h * h
    u = 1.0 / H
    s2_0 = sigma0 * sigma0
    s2_s = float(gaussian_sigma_sq(sigma0, tau_s))
    c_U = math.log(math.sqrt(2 * math.pi) * sigma0) if sigma0 <= 1 else -math.inf
    h0 = _h0_half(sigma0)
    # sigma_tau^2 is monotone in tau: the sup of C2 over [s, T] sits at an end point
    C2_sup = max(C2(1.0 / v, 1.0 / v, reading=reading) for v in (s2_0, s2_s))
    h_lb = max(0.5, h0, math.sqrt(max(0.0, -c_U / math.log(2.0), C2_sup)))
    log_rho_over_p = -u * c_U - _log_Z_V(s2_0, h) if math.isfinite(c_U) else math.inf
    C_h = _C_h_closed(s2_s, h, c, kind)
    int_dlogZ = abs(_log_Z_V(s2_0, h) - _log_Z_V(s2_s, h))
    if reading == "eq30":
        J0 = tau_s
        Jm1 = _int_inv_sigma_sq(sigma0, tau_s)
        J1 = _int_sigma_sq(sigma0, tau_s)
        J2 = _int_sigma_4(sigma0, tau_s)
        # (h^2 - 30 - 20 sigma^4)((1 + u)/sigma^2 - u)
        int_decay = (H - 30.0) * (1.0 + u) * Jm1 - (H - 30.0) * u * J0 - 20.0 * (1.0 + u) * J1 \
            + 20.0 * u * J2
        int_C1 = int_dlogZ + 2.5 * J0 + 77.5 * Jm1 + 50.0 * J1
        exponent = int_decay - int_C1
    else:
        from scipy.integrate import quad

        def integrand(tau):
            v = float(gaussian_sigma_sq(sigma0, tau))
            m = 1.0 / v
            k = kappa(m, h)
            return (H - C2(m, m, reading=reading)) * k \
                - (C1(0.0, 1, m, m, 0.0, 0.0, reading=reading))

        val, _ = quad(integrand, 0.0, tau_s, epsabs=0.0, epsrel=1e-12, limit=200)
        exponent = val - int_dlogZ
    log_b = math.log(C_h) + 2.0 * math.log1p(H) - exponent if math.isfinite(C_h) else math.inf
    return Bound17Gaussian(sigma0=sigma0, T=T, s=s, h=h, c=c, kind=kind, reading=reading,
                           c_U=c_U, h0_half=h0, C2_sup=C2_sup, h_lb=h_lb, h_ok=bool(h >= h_lb),
                           rho_over_p_sup=math.exp(log_rho_over_p), C_h=C_h, exponent=exponent,
                           log_bound=log_b)


# ================================================================ App. F.2 with sympy ===========
@functools.lru_cache(maxsize=1)  # pure and symbolic (a few seconds): computed once per process
def appF2_identity():
    r"""[OS] App. F.2: for p0 = N(mu, sigma0^2 I_d) and E_T = grad log p0, the bound (18)
    (equivalently (41)) equals d:

        (sigma0^4 / 2) int (|x - mu|^2/sigma0^4 - d/sigma0^2)^2 p0 dx = d.

    Symbolic routes (sympy), all exact:
    (a) general d: |x - mu|^2 = sigma0^2 Q with Q ~ chi^2_d, integrated against the chi^2_d
        density;
    (b) from the definition (41), (1/(2 m0^2)) int (|grad U0|^2 - Laplacian U0)^2 e^{-U0}, with
        U0 = -log p0 differentiated symbolically (symbolic mu, sigma0) and x = mu + sigma0 z:
        d = 1 by ``sympy.integrate``; d = 1..4 by the Gaussian moments E z^k = (k - 1)!!.
    Returns (general-d value minus d, {route: value - d}, True iff every difference is 0).
    """
    import sympy as sp

    d = sp.Symbol("d", positive=True)
    q = sp.Symbol("q", positive=True)
    sig = sp.Symbol("sigma0", positive=True)
    dens = q ** (d / 2 - 1) * sp.exp(-q / 2) / (2 ** (d / 2) * sp.gamma(d / 2))
    # sigma0^4/2 ((q - d)/sigma0^2)^2 = (q - d)^2 / 2
    general = sp.integrate((q - d) ** 2 / 2 * dens, (q, 0, sp.oo))
    diff_general = sp.simplify(sp.gammasimp(general - d))

    def moment(k):
        return sp.Integer(0) if k % 2 else sp.factorial2(k - 1) if k > 0 else sp.Integer(1)

    per = {}
    for dd in (1, 2, 3, 4):
        xs = sp.symbols(f"x1:{dd + 1}", real=True)
        zs = sp.symbols(f"z1:{dd + 1}", real=True)
        mus = sp.symbols(f"mu1:{dd + 1}", real=True)
        U0 = sum((x - m) ** 2 for x, m in zip(xs, mus)) / (2 * sig ** 2) \
            + sp.Rational(dd, 2) * sp.log(2 * sp.pi * sig ** 2)
        grad2 = sum(sp.diff(U0, x) ** 2 for x in xs)
        lap = sum(sp.diff(U0, x, 2) for x in xs)
        m0 = 1 / sig ** 2  # Hess U0 = I / sigma0^2
        poly = sp.expand(((grad2 - lap) ** 2).subs({x: m + sig * z for x, m, z in zip(xs, mus, zs)}))
        P = sp.Poly(poly, *zs)
        expect = sum(coef * sp.prod([moment(k) for k in mon]) for mon, coef in P.terms())
        per[f"d={dd}, Gaussian moments"] = sp.simplify(expect / (2 * m0 ** 2) - dd)
        if dd == 1:
            z = zs[0]
            val = sp.integrate(poly * sp.exp(-z ** 2 / 2) / sp.sqrt(2 * sp.pi), (z, -sp.oo, sp.oo))
            per["d=1, sympy.integrate"] = sp.simplify(val / (2 * m0 ** 2) - 1)
    ok = bool(diff_general == 0 and all(v == 0 for v in per.values()))
    return diff_general, per, ok
