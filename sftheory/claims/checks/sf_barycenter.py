"""``sf.*`` distribution-level checks of the ScoreFusion paper: the KL barycenter (Theorem 1,
Lemma 1), the convexity, gradient and Hessian of vanilla fusion's problem (9) (Prop. 1,
Remark 2) and Frank-Wolfe's rate (Alg. 2, eq. (22)), measured on :mod:`sftheory.fusion`.

Independent routes written out here: 1-D densities from ``scipy.stats`` integrated with
``scipy.integrate.quad`` (epsrel 1e-11), a 2-D trapezoid grid on ``scipy.stats`` densities,
closed-form Gaussian KL divergences, finite differences, ``scipy.optimize`` (SLSQP) on the
simplex.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, stats
from scipy.optimize import minimize
from scipy.special import logsumexp

from ... import fusion
from ...models import Gaussian, GaussianMixture
from ..record import Context, Record
from ..registry import claim
from ..verdicts import Verdict, corrected, within
from ._common import Measured

# scipy quad at epsrel 1e-11 on smooth integrands: relative agreement of 1e-8 leaves 1000 x margin
QUAD_RTOL = 1e-8


# ---- independent 1-D densities (scipy.stats) and quadrature -------------------------------------
class _Mix1D:
    """A 1-D Gaussian mixture written with scipy.stats (never through sftheory.models)."""

    def __init__(self, w, m, v):
        self.w, self.m, self.v = np.asarray(w, float), np.asarray(m, float), np.asarray(v, float)

    def logpdf(self, x):
        """log sum_k w_k exp(-(x - m_k)^2 / (2 v_k)) / sqrt(2 pi v_k), scalar or array x."""
        if np.ndim(x) == 0:  # fast scalar path for quad
            x = float(x)
            terms = [math.log(wk) - 0.5 * math.log(2 * math.pi * vk) - 0.5 * (x - mk) ** 2 / vk
                     for wk, mk, vk in zip(self.w, self.m, self.v) if wk > 0]
            top = max(terms)
            return top + math.log(sum(math.exp(t - top) for t in terms))
        x = np.asarray(x, float)
        comps = [np.log(wk) - 0.5 * np.log(2 * np.pi * vk) - 0.5 * (x - mk) ** 2 / vk
                 for wk, mk, vk in zip(self.w, self.m, self.v) if wk > 0]
        return logsumexp(np.stack(comps), axis=0)

    def model(self):
        if len(self.w) == 1:
            return Gaussian([self.m[0]], self.v[0])
        return GaussianMixture(self.w, self.m[:, None], self.v, covariance_type="spherical")


def _quad(f, pts):
    lo, hi = min(pts) - 40.0, max(pts) + 40.0
    return integrate.quad(f, lo, hi, points=sorted(set(float(p) for p in pts)), limit=1000,
                          epsabs=0.0, epsrel=1e-11)[0]


def _quad_vec(f, pts):
    """Vector-valued adaptive quadrature (scipy quad_vec, Gauss-Kronrod 21) on the same box."""
    lo, hi = min(pts) - 40.0, max(pts) + 40.0
    return integrate.quad_vec(f, lo, hi, points=sorted(set(float(p) for p in pts)),
                              epsabs=0.0, epsrel=1e-12, limit=2000)[0]


def _random_mix(rng, n_comp):
    w = rng.dirichlet(np.full(n_comp, 2.0)) if n_comp > 1 else np.ones(1)
    return _Mix1D(w, rng.uniform(-3, 3, n_comp), rng.uniform(0.3, 2.0, n_comp))


def _interior_lambda(rng, k):
    return 0.1 / k + 0.9 * rng.dirichlet(np.full(k, 2.0))


def _bary_logpdf(refs, lam):
    return lambda x: sum(l * r.logpdf(x) for l, r in zip(lam, refs))


def _quad_moments(refs, lam):
    """(log Z, E h (k,), Cov h (k, k)) of h_i = log p_i under prod p_i^lam_i / Z, by quad_vec
    (second pass centred at the first pass's mean, so the covariance has no cancellation)."""
    pts = np.concatenate([r.m for r in refs])
    lam = np.asarray(lam, float)
    shift = float(max(sum(l * r.logpdf(p) for l, r in zip(lam, refs)) for p in pts))

    def hvec(x):
        return np.array([r.logpdf(float(x)) for r in refs])

    def first(x):
        h = hvec(x)
        e = math.exp(float(lam @ h) - shift)
        return np.concatenate([[e], e * h])

    v = _quad_vec(first, pts)
    Z, Eh = v[0], v[1:] / v[0]

    def second(x):
        h = hvec(x) - Eh
        return math.exp(float(lam @ (h + Eh)) - shift) * np.outer(h, h).ravel()

    k = len(refs)
    C = _quad_vec(second, pts).reshape(k, k) / Z
    return math.log(Z) + shift, Eh, 0.5 * (C + C.T)


def _rel(a, b, scale=None):
    """|a - b| / (QUAD_RTOL * scale) (NaN if a is not finite)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not np.all(np.isfinite(a)):
        return math.nan
    s = np.max(np.abs(b)) + 1e-300 if scale is None else scale
    return float(np.max(np.abs(a - b)) / (QUAD_RTOL * s))


# ---- sf.thm1 ------------------------------------------------------------------------------------
def _gauss_J(m, s2, refs, lam):
    """sum_i lam_i KL(N(m, s2) || N(m_i, s_i^2)) in closed form (1-D)."""
    return float(sum(l * 0.5 * (math.log(r.v[0] / s2) + (s2 + (m - r.m[0]) ** 2) / r.v[0] - 1)
                     for l, r in zip(lam, refs)))


def measure_thm1(rng, n_inst: int, n_mc: int) -> Measured:
    out = Measured()
    # (a) Gaussian references: closed form vs quad moments of prod p_i^lam_i; local optimality
    for inst in range(n_inst):
        refs = [_random_mix(rng, 1) for _ in range(3)]
        lam = rng.dirichlet(np.ones(3))
        b = fusion.barycenter([r.model() for r in refs], lam)
        mean, var = float(b.mean[0]), float(b.cov[0, 0])
        pts = np.concatenate([r.m for r in refs])
        lb = _bary_logpdf(refs, lam)
        Z = _quad(lambda x: math.exp(lb(x)), pts)
        qm = _quad(lambda x: x * math.exp(lb(x)), pts) / Z
        qv = _quad(lambda x: (x - qm) ** 2 * math.exp(lb(x)), pts) / Z
        sd = math.sqrt(qv)
        out.add("gaussian_mean_vs_quad", _rel(mean, qm, sd), inst)
        out.add("gaussian_var_vs_quad", _rel(var, qv, qv), inst)
        J0 = _gauss_J(mean, var, refs, lam)
        drops = []
        for dm, dv in ((1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3), (0.3, 0.2), (-0.2, -0.1)):
            J = _gauss_J(mean + dm * sd, var * (1 + dv), refs, lam)
            drops.append(J0 - J)  # > 0 would mean the perturbation does better
        # closed-form J: rounding ~ 1e-15; a perturbation 1e-3 sd off the optimum raises J by
        # ~5e-7 / var-scaled, so a threshold 1e-12 separates the two by orders of magnitude
        out.add("gaussian_perturbation_lowers_J", max(drops) / 1e-12, inst)
        out.rows.append({"case": f"gaussian[{inst}]", "lam": lam.tolist(), "mean": mean,
                         "var": var, "quad_mean": qm, "quad_var": qv})
    # (b) 2-D Gaussians, full covariances: closed form vs a trapezoid grid on scipy densities
    means = rng.normal(size=(3, 2))
    covs = []
    for _ in range(3):
        a = rng.normal(size=(2, 2))
        covs.append(a @ a.T + 0.5 * np.eye(2))
    lam = rng.dirichlet(np.ones(3))
    b = fusion.barycenter([Gaussian(m, c) for m, c in zip(means, covs)], lam)
    sd = np.sqrt(np.diag(b.cov))
    ax = [np.linspace(b.mean[i] - 14 * sd[i], b.mean[i] + 14 * sd[i], 561) for i in range(2)]
    X, Y = np.meshgrid(*ax, indexing="ij")
    P = np.column_stack([X.ravel(), Y.ravel()])
    lw = sum(l * stats.multivariate_normal(m, c).logpdf(P) for l, m, c in zip(lam, means, covs))
    w = np.exp(lw - lw.max())
    w /= w.sum()
    gm = w @ P
    gc = (P - gm).T @ (w[:, None] * (P - gm))
    out.add("gaussian2d_mean_vs_grid", _rel(b.mean, gm, float(sd.max())), "2d")
    out.add("gaussian2d_cov_vs_grid", _rel(b.cov, gc, float(np.abs(gc).max())), "2d")
    # (c) mixtures: log Z (package quadrature) vs scipy quad vs rejection acceptance rate; J(p*)
    # = -log Z, and perturbations of p* never lower J
    for inst in range(n_inst):
        refs = [_random_mix(rng, 2) for _ in range(3)]
        lam = rng.dirichlet(np.ones(3))
        kb = fusion.barycenter([r.model() for r in refs], lam)
        logz = kb.log_normalizer.value
        pts = np.concatenate([r.m for r in refs])
        lb = _bary_logpdf(refs, lam)
        qz = math.log(_quad(lambda x: math.exp(lb(x)), pts))
        out.add("mixture_logZ_vs_quad", _rel(logz, qz, 1.0), inst)
        mc = kb.log_normalizer_mc(n_mc, seed=rng)
        # 5 standard errors: a false alarm has probability ~6e-7
        out.add("mixture_logZ_rejection_vs_quad",
                abs(mc.value - qz) / (5 * mc.stderr) if mc.stderr > 0 else math.nan, inst)

        def pstar(x):  # the package's barycenter density, normalized by the package's log Z
            return math.exp(lb(x) - logz)

        def J(q):
            def f(x):
                qx = q(x)
                return 0.0 if qx <= 0 else qx * (math.log(qx) - lb(x))
            return _quad(f, pts)

        J0 = J(pstar)
        out.add("mixture_J_at_barycenter_vs_minus_logZ", _rel(J0, -qz, 1.0), inst)
        r_m, r_s = rng.uniform(-2, 2), rng.uniform(0.5, 2)
        a, c = rng.uniform(0.5, 2), rng.uniform(0, 2 * math.pi)
        Zt = {}
        perts = []
        for eps in (0.3, 0.03, 0.003):
            perts.append(lambda x, e=eps: (1 - e) * pstar(x) + e * stats.norm.pdf(x, r_m, r_s))
            Zt[eps] = _quad(lambda x, e=eps: pstar(x) * math.exp(e * math.sin(a * x + c)), pts)
            perts.append(lambda x, e=eps: pstar(x) * math.exp(e * math.sin(a * x + c)) / Zt[e])
        drops = [J0 - J(q) for q in perts]
        # quad error on J ~ 1e-11 |J|: J(q) - J(p*) = KL(q || p*) >= 3e-7 for the smallest
        # perturbation here, so a drop below -1e-9 cannot come from quadrature
        out.add("mixture_perturbation_lowers_J", max(drops) / 1e-9, inst)
        out.rows.append({"case": f"mixture[{inst}]", "lam": lam.tolist(), "logZ": logz,
                         "quad_logZ": qz, "rejection_logZ": mc.value,
                         "rejection_stderr": mc.stderr, "J_barycenter": J0,
                         "min_J_increase": -max(drops)})
    return out


@claim("sf.thm1", title="Theorem 1: the KL barycenter is prod p_i^lambda_i / Z",
       source="[SF] Theorem 1, App. B.1")
def check_thm1(ctx: Context) -> Record:
    """Gaussians: the precision-weighted closed form against quad/grid moments of prod
    p_i^lambda_i; mixtures: log Z by the package's quadrature, scipy quad and rejection; the
    objective sum_i lambda_i KL(q || p_i) at the barycenter equals -log Z and every perturbation
    (mixing in a Gaussian, tilting by exp(eps sin)) raises it."""
    m = measure_thm1(ctx.rng(0), ctx.size(2, 6), ctx.size(100_000, 1_000_000))
    return ctx.verdict(
        within(m.worst()),
        compared=[("fusion.barycenter(Gaussians) mean/cov", "quad (1-D) / trapezoid grid (2-D) "
                   "moments of prod scipy.stats pdf^lambda"),
                  ("KLBarycenter.log_normalizer (package quadrature)", "scipy quad"),
                  ("KLBarycenter.log_normalizer_mc (rejection acceptance rate)", "scipy quad"),
                  ("sum_i lambda_i KL(q || p_i) at q = barycenter", "-log Z and at perturbed q")],
        claimed={"thm1": "argmin_mu sum_i lambda_i KL(mu || p_i) = prod p_i^lambda_i / Z, unique"},
        measured={"worst_rows": m.rows[:4]},
        tolerance={"quad_rtol": QUAD_RTOL, "rejection": "5 standard errors",
                   "perturbation_drop_gaussian": 1e-12, "perturbation_drop_mixture": 1e-9},
        rows=m.rows,
        notes="J(q) - J(p*) = KL(q || p*) >= 0 is the identity behind the theorem (the paper's "
              "proof only writes the stationarity condition); the perturbation test measures it.")


# ---- sf.lemma1 ----------------------------------------------------------------------------------
def measure_lemma1(rng, n_seg: int) -> Measured:
    out = Measured()
    for s in range(n_seg):
        refs = [_random_mix(rng, 2) for _ in range(3)]
        lam = rng.dirichlet(np.ones(3))
        kb = fusion.barycenter([r.model() for r in refs], lam)
        logz = kb.log_normalizer.value
        mu1, mu2 = _random_mix(rng, 2), _random_mix(rng, 2)
        pts = np.concatenate([r.m for r in refs + [mu1, mu2]])
        lb = _bary_logpdf(refs, lam)

        def J_direct(logq):
            return _quad(lambda x: math.exp(logq(x)) * (logq(x) - lb(x)), pts)

        qz = math.log(_quad(lambda x: math.exp(lb(x)), pts))  # independent log Z
        # the package's normalized barycenter density (its logpdf minus its log Z) against
        # sum_i lambda_i log p_i - log Z from scipy
        xs = np.linspace(-3, 3, 7)
        out.add("barycenter_normalized_logpdf_vs_quad",
                _rel(kb.normalized_logpdf(xs[:, None]), lb(xs) - qz, 1.0), s)

        def J_via_barycenter(logq):  # J(q) = KL(q || p_lambda) - log Z, p_lambda the package's
            return _quad(lambda x: math.exp(logq(x)) * (logq(x) - (lb(x) - logz)), pts) - qz

        def kl(lp, lq):
            return _quad(lambda x: math.exp(lp(x)) * (lp(x) - lq(x)), pts)

        J1, J2 = J_direct(mu1.logpdf), J_direct(mu2.logpdf)
        for t in (0.25, 0.5, 0.75):
            def lm(x, t=t):
                return float(np.logaddexp(math.log(t) + mu1.logpdf(x),
                                          math.log(1 - t) + mu2.logpdf(x)))
            Jm = J_direct(lm)
            out.add("J_direct_vs_via_barycenter", _rel(J_via_barycenter(lm), Jm, 1 + abs(Jm)),
                    (s, t))
            gap = t * J1 + (1 - t) * J2 - Jm
            js = t * kl(mu1.logpdf, lm) + (1 - t) * kl(mu2.logpdf, lm)
            # the convexity gap is lambda-free: t KL(mu1 || m) + (1 - t) KL(mu2 || m)
            out.add("gap_vs_jensen_shannon", _rel(gap, js, 1 + abs(J1) + abs(J2)), (s, t))
            # strict: gap > 0 by a margin far above quad error (~1e-11 |J|)
            out.add("strictness", 1e-7 / gap if gap > 0 else math.inf, (s, t))
            out.rows.append({"segment": s, "t": t, "J_mid": Jm, "chord": t * J1 + (1 - t) * J2,
                             "gap": gap, "js": js})
    return out


@claim("sf.lemma1", title="Lemma 1: the KL barycenter problem is strictly convex",
       source="[SF] App. B, Lemma 1")
def check_lemma1(ctx: Context) -> Record:
    """J(mu) = sum_i lambda_i KL(mu || p_i) along random segments between Gaussian mixtures:
    direct quad vs KL(. || p_lambda) - log Z from the package's barycenter, the chord gap
    strictly positive and equal to t KL(mu1 || m) + (1-t) KL(mu2 || m)."""
    m = measure_lemma1(ctx.rng(0), ctx.size(2, 8))
    gaps = [r["gap"] for r in m.rows]
    return ctx.verdict(
        within(m.worst()),
        compared=[("J(mu_t) by quad", "t J(mu1) + (1-t) J(mu2)"),
                  ("J by quad", "KL(mu || fusion.barycenter) - log Z"),
                  ("chord gap", "t KL(mu1||mu_t) + (1-t) KL(mu2||mu_t) by quad")],
        claimed={"lemma1": "mu -> sum_i lambda_i KL(mu || P_i) is strictly convex"},
        measured={"min_gap": float(min(gaps)), "segments": len(gaps)},
        tolerance={"quad_rtol": QUAD_RTOL, "strict_margin": 1e-7}, rows=m.rows,
        notes="The gap does not depend on lambda or the P_i: the cross-entropy term is linear in "
              "mu, so strictness is that of the negative entropy.")


# ---- sf.prop1 / sf.remark2: instances ----------------------------------------------------------
def _instances(rng, n):
    """(name, scipy refs, package problem, independent E_nu[h] route) per instance: Gaussian
    references with a Gaussian target (closed-form route), mixture references with a sample
    target (quadrature route)."""
    out = []
    for i in range(n):
        refs = [_random_mix(rng, 1) for _ in range(3)]
        tgt = _random_mix(rng, 1)
        prob = fusion.FusionObjective([r.model() for r in refs], tgt.model())
        e_nu = np.array([_quad(lambda x, r=r: r.logpdf(x) * math.exp(tgt.logpdf(x)),
                               np.concatenate([tgt.m, r.m])) for r in refs])
        out.append((f"gaussian[{i}]", refs, prob, e_nu))
        refs = [_random_mix(rng, 2) for _ in range(3)]
        xs = _random_mix(rng, 2).model().sample(300, seed=rng)
        prob = fusion.FusionObjective([r.model() for r in refs], xs)
        e_nu = np.array([np.mean(r.logpdf(xs[:, 0])) for r in refs])
        out.append((f"mixture[{i}]", refs, prob, e_nu))
    return out


def _tangent(rng, k):
    u = rng.normal(size=k)
    u -= u.mean()
    return u / np.linalg.norm(u)


def measure_prop1(rng, n: int) -> Measured:
    out = Measured()
    for name, refs, prob, _ in _instances(rng, n):
        for _ in range(2):
            lam = _interior_lambda(rng, 3)
            H = prob.hessian(lam)
            _, _, C = _quad_moments(refs, lam)
            out.add("hessian_vs_quad_covariance", _rel(H, C), name)
            ev = np.linalg.eigvalsh(C if not np.all(np.isfinite(H)) else H)
            out.add("hessian_psd", max(0.0, -ev[0]) / (1e-10 * abs(ev[-1]) + 1e-14)
                    if np.all(np.isfinite(H)) else math.nan, name)
            for _ in range(2):
                u = _tangent(rng, 3)
                d = 1e-3
                fd = (prob.value(lam + d * u) - 2 * prob.value(lam)
                      + prob.value(lam - d * u)) / d ** 2
                uhu = float(u @ H @ u)
                # central second difference: truncation ~ d^2 F''''/12 ~ 1e-7, rounding
                # ~ eps |F| / d^2 ~ 1e-10: 1e-5 relative (or absolute for small curvature)
                out.add("hessian_vs_second_difference", abs(fd - uhu) / (1e-5 * max(1.0, abs(uhu)))
                        if math.isfinite(uhu) else math.nan, name)
            a, b = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3))
            chord = 0.5 * (prob.value(a) + prob.value(b)) - prob.value(0.5 * (a + b))
            out.add("midpoint_convexity", max(0.0, -chord) / 1e-12, name)
            out.rows.append({"instance": name, "lam": lam.tolist(), "min_eig": float(ev[0]),
                             "max_eig": float(ev[-1]), "midpoint_gap": float(chord)})
    return out


@claim("sf.prop1", title="Prop. 1: problem (9) is convex; Hessian = Cov_{p_lambda}(log p_i)",
       source="[SF] Prop. 1, App. C.1.3")
def check_prop1(ctx: Context) -> Record:
    """Hessian of F(lambda) from the package (Gaussian closed form / quadrature) against the
    covariance of (log p_i) under p_lambda by scipy quad and against second differences of F
    along tangent directions; PSD and midpoint convexity on random instances."""
    m = measure_prop1(ctx.rng(0), ctx.size(1, 4))
    return ctx.verdict(
        within(m.worst()),
        compared=[("FusionObjective.hessian", "Cov_{p_lambda}(h_i, h_j) by scipy quad"),
                  ("u^T hessian u", "second central difference of FusionObjective.value"),
                  ("eigenvalues of the Hessian", ">= 0"),
                  ("F((a+b)/2)", "(F(a) + F(b))/2")],
        claimed={"prop1": "F(lambda) of (9) is convex in lambda (log-MGF argument)"},
        measured={"min_eigenvalue": float(min(r["min_eig"] for r in m.rows))},
        tolerance={"quad_rtol": QUAD_RTOL, "second_difference_rtol": 1e-5,
                   "psd": "min eig >= -1e-10 max eig"}, rows=m.rows,
        notes="Gaussian references go through the closed form (gaussian_log_ref_moments), "
              "mixtures through the package's trapezoid grid; the target enters F only linearly.")


def measure_remark2(rng, n: int) -> Measured:
    out = Measured()
    for name, refs, prob, e_nu in _instances(rng, n):
        for _ in range(2):
            lam = _interior_lambda(rng, 3)
            g = prob.grad(lam)
            _, Eh, _ = _quad_moments(refs, lam)
            ref = -e_nu + Eh
            out.add("gradient_vs_quad_remark2", _rel(g, ref, 1 + float(np.abs(ref).max())), name)
            for _ in range(2):
                u = _tangent(rng, 3)
                d = 1e-4
                fd = (prob.value(lam + d * u) - prob.value(lam - d * u)) / (2 * d)
                ug = float(u @ g)
                # truncation d^2 F'''/6 ~ 1e-9, rounding eps |F| / d ~ 1e-12: 1e-6 relative
                out.add("gradient_vs_central_difference",
                        abs(fd - ug) / (1e-6 * max(1.0, abs(ug))) if math.isfinite(ug)
                        else math.nan, name)
            out.rows.append({"instance": name, "lam": lam.tolist(), "grad": g.tolist(),
                             "quad": ref.tolist()})
    return out


@claim("sf.remark2", title="Remark 2: dF/dlambda_i = -E_nu[log p_i] + E_{p_lambda}[log p_i]",
       source="[SF] App. C.1.3, Remark 2")
def check_remark2(ctx: Context) -> Record:
    """The package's gradient of (9) against the two integrals of Remark 2 by scipy quad (and a
    scipy-only sample mean for E_nu) and against central differences of F along tangents."""
    m = measure_remark2(ctx.rng(0), ctx.size(1, 4))
    return ctx.verdict(
        within(m.worst()),
        compared=[("FusionObjective.grad", "-E_nu[h_i] + E_{p_lambda}[h_i] by scipy quad"),
                  ("u . grad", "central difference of FusionObjective.value")],
        claimed={"remark2": "dF/dlambda_i = -int nu h_i + int prod p_l^lambda_l h_i / Z"},
        tolerance={"quad_rtol": QUAD_RTOL, "central_difference_rtol": 1e-6}, rows=m.rows)


# ---- sf.alg2 ------------------------------------------------------------------------------------
D_SQ = 2.0  # squared Euclidean diameter of the probability simplex (|e_i - e_j|^2)
# adversarial instance: references N(-1/2, 1), N(1/2, 1); target N(-1/2 + EPS_ADV, 1), so
# F(lambda) = (lambda_2 - EPS_ADV)^2 / 2 + const exactly, lambda* = (1 - EPS_ADV, EPS_ADV), L = 1/2
EPS_ADV = 0.02


def _proj(x):
    """SLSQP's iterates satisfy the constraints only to ~1e-9: clip and renormalize."""
    x = np.clip(x, 0, None)
    return x / x.sum()


def _slsqp(prob, k):
    best = None
    for x0 in [np.full(k, 1 / k)] + list(np.eye(k) * 0.9 + 0.1 / k):
        r = minimize(lambda x: prob.value(_proj(x)), x0, jac=lambda x: prob.grad(_proj(x)),
                     method="SLSQP", bounds=[(0, 1)] * k,
                     constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                     options={"ftol": 1e-15, "maxiter": 1000})
        x = np.clip(r.x, 0, None)
        x /= x.sum()
        f = prob.value(x)
        if best is None or f < best[1]:
            best = (x, f)
    return best


def _tangent_hessian(prob, lam):
    """P H P, P = I - 11^T/k: the Hessian restricted to the simplex's tangent space {sum u = 0},
    the only curvature Frank-Wolfe's steps see (the full R^k Hessian depends on how F is
    extended off the simplex: adding c (sum lambda - 1)^2 changes it, not F on the simplex)."""
    k = len(lam)
    P = np.eye(k) - 1.0 / k
    return P @ prob.hessian(lam) @ P


def _max_curvature(prob, k, rng, tangent=True):
    """L = max over the simplex of the largest eigenvalue of the (tangent) Hessian: a grid of
    step 1/20 over the simplex, then a local SLSQP refinement from the best grid point."""
    def lmax(x):
        x = np.clip(x, 0, None)
        x = x / x.sum()
        return float(np.linalg.eigvalsh(_tangent_hessian(prob, x) if tangent
                                        else prob.hessian(x))[-1])

    grid = [np.array([i, j, 20 - i - j]) / 20 for i in range(21) for j in range(21 - i)] \
        if k == 3 else [np.array([i, 20 - i]) / 20 for i in range(21)]
    vals = [lmax(g) for g in grid]
    x0 = grid[int(np.nanargmax(vals))]
    r = minimize(lambda x: -lmax(x), x0, method="SLSQP", bounds=[(0, 1)] * k,
                 constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}])
    return max(max(vals), -float(r.fun))


def measure_alg2(rng, n_random: int, iters: int) -> Measured:
    out = Measured()
    cases = []
    refs = [Gaussian([-0.5], 1.0), Gaussian([0.5], 1.0)]
    adv = fusion.FusionObjective(refs, Gaussian([-0.5 + EPS_ADV], 1.0))
    # gate: the package's F and Hessian against the closed form of this instance
    lams = [np.array([1 - s, s]) for s in np.linspace(0, 1, 11)]
    diffs = [adv.value(l) - 0.5 * (l[1] - EPS_ADV) ** 2 for l in lams]
    out.add("adversarial_F_vs_closed_form", float(np.ptp(diffs)) / 1e-12
            if np.all(np.isfinite(diffs)) else math.nan, "adv")
    H_cf = np.array([[0.25, -0.25], [-0.25, 0.25]])
    out.add("adversarial_hessian_vs_closed_form",
            max(_rel(_tangent_hessian(adv, l), H_cf, 1.0) for l in lams[::5]) * QUAD_RTOL / 1e-12,
            "adv")
    if not all(0 <= w <= 1 for w in out.worst().values()):
        return out  # the objective under test is wrong: the rate is not measured on it
    # F* = min F = the constant of F - (lambda_2 - eps)^2 / 2 (lambda* interior)
    cases.append(("adversarial", adv, 2, np.array([0.0, 1.0]), 0.5, float(np.mean(diffs)),
                  _max_curvature(adv, 2, rng, tangent=False)))
    for i in range(n_random):
        refs = [Gaussian([rng.uniform(-2, 2)], rng.uniform(0.3, 2.0)) for _ in range(3)]
        tgt = GaussianMixture([0.5, 0.5], rng.uniform(-2, 2, (2, 1)), rng.uniform(0.3, 1.5, 2),
                              covariance_type="spherical")
        prob = fusion.FusionObjective(refs, tgt)
        # start at the worst vertex (the one with the largest F): never the optimum
        x0 = np.eye(3)[int(np.argmax([prob.value(e) for e in np.eye(3)]))]
        cases.append((f"gaussian3[{i}]", prob, 3, x0, _max_curvature(prob, 3, rng), None,
                      _max_curvature(prob, 3, rng, tangent=False)))
    for name, prob, k, x0, L, fstar_cf, L_full in cases:
        x_sl, f_sl = _slsqp(prob, k)
        away = fusion.frank_wolfe(prob.grad, np.full(k, 1 / k), objective=prob.value,
                                  step="away", gap_tol=1e-13, max_iter=5000)
        f_star = min(f_sl, float(away.objective[-1]))
        # gate: two solvers of the same problem agree (SLSQP ftol 1e-15, FW gap 1e-13)
        out.add("fstar_slsqp_vs_frank_wolfe",
                abs(f_sl - float(away.objective[-1])) / 1e-9, name)
        if fstar_cf is not None:  # adversarial: F* = min F = const (lambda* interior)
            out.add("adversarial_fstar_vs_closed_form", abs(f_star - fstar_cf) / 1e-10, name)
        row = {"instance": name, "L": L, "L_full_hessian": L_full, "f_star": f_star}
        for step in ("paper", "standard"):
            res = fusion.frank_wolfe(prob.grad, x0, objective=prob.value, step=step,
                                     max_iter=iters, gap_tol=0.0, f_star=f_star)
            h = res.primal_gaps[1:]
            tau = np.arange(1, len(h) + 1)
            # 1e-10 absolute slack: the error of f_star
            slack = 1e-10
            for label, off in (("tau+3", 3.0), ("tau+2", 2.0)):
                bound = 2 * L * D_SQ / (tau + off)
                ratio = (h - slack) / bound
                worst = int(np.argmax(ratio))
                row[f"{step}_max_h_over_bound_{label}"] = float(ratio[worst])
                row[f"{step}_worst_tau_{label}"] = int(tau[worst])
                out.add(f"{step}_rule_vs_2LD2/({label})", ratio[worst], name)
            # the same with L = the largest eigenvalue of the full R^k Hessian (a looser bound)
            full = float(np.max((h - slack) / (2 * L_full * D_SQ / (tau + 3.0))))
            row[f"{step}_max_h_over_bound_tau+3_full_L"] = full
            out.numbers[f"{step}_rule_vs_2LD2/(tau+3)_full_hessian_L"] = max(
                out.numbers.get(f"{step}_rule_vs_2LD2/(tau+3)_full_hessian_L", -math.inf), full)
            row[f"{step}_h"] = [float(v) for v in h[:6]]
        out.rows.append(row)
    return out


@claim("sf.alg2", title="Alg. 2 / eq. (22): Frank-Wolfe primal gap <= 2 L D^2 / (tau + 3)",
       source="[SF] App. C.1.2 Alg. 2; App. C.2 eq. (22), (23)")
def check_alg2(ctx: Context) -> Record:
    """Frank-Wolfe on problem (9) with exact expectations (the n^(-1/2) term of (22) vanishes):
    primal gaps h_tau (f* by SLSQP and away-step FW, which must agree) against 2 L D^2/(tau+3),
    L the largest eigenvalue of the Hessian on the simplex's tangent space, maximized over the
    simplex (the smoothness constant the proof's descent step uses), D^2 = 2; the bound with the
    larger full-Hessian eigenvalue is recorded too. For the printed step rule
    (gamma_0 = gamma_1 = 1, then 2/(tau+3)) and the standard 2/(tau+2). An adversarial
    two-reference instance where F is an exact quadratic shows the printed rule's second full
    step."""
    m = measure_alg2(ctx.rng(0), ctx.size(2, 6), ctx.size(200, 2000))
    w = m.worst()
    gates = {k: v for k, v in w.items() if "rule_vs" not in k}
    gate = within(gates)
    if gate.verdict != "confirmed":
        v = Verdict("refuted", "the measured objective does not match its independent "
                    "reference: " + gate.reason, gate.measured)
    else:
        v = corrected(paper=w["paper_rule_vs_2LD2/(tau+3)"],
                      fixed={"paper_rule_vs_2LD2/(tau+2)": w["paper_rule_vs_2LD2/(tau+2)"],
                             "standard_rule_vs_2LD2/(tau+3)": w["standard_rule_vs_2LD2/(tau+3)"]},
                      fix="with the printed rule (full steps at tau = 0 and 1) the bound is "
                          "2 L D^2 / (tau + 2); 2 L D^2 / (tau + 3) holds for gamma_tau = "
                          "2/(tau + 2)")
    if not m.rows:
        return ctx.verdict(v, compared=[("FusionObjective on the adversarial instance",
                                         "(lambda_2 - eps)^2 / 2")],
                           claimed={"eq22": "h_tau <~ 2 L D^2 / (tau + 3) + O(n^-1/2)"},
                           notes="the gate failed: the Frank-Wolfe rate was not measured")
    adv = m.rows[0]
    return ctx.verdict(
        v,
        compared=[("Frank-Wolfe primal gap h_tau, printed rule", "2 L D^2 / (tau + 3)"),
                  ("printed rule", "2 L D^2 / (tau + 2)"),
                  ("standard rule 2/(tau+2)", "2 L D^2 / (tau + 3)"),
                  ("f* by SLSQP", "f* by away-step Frank-Wolfe"),
                  ("FusionObjective on the adversarial instance", "(lambda_2 - eps)^2 / 2")],
        claimed={"eq22": "h_tau <~ 2 L D^2 / (tau + 3) + O(n^-1/2) for tau >= 1",
                 "alg2": "gamma_tau = 1 if tau = 1, 2/(tau+3) if tau > 1, loop from tau = 0"},
        measured={**gates, **m.numbers, "adversarial_h_paper_rule": adv["paper_h"],
                  "adversarial_h2_over_bound": adv["paper_max_h_over_bound_tau+3"]},
        tolerance={"f_star_slack": 1e-10, "gates": "F closed form 1e-12, f* agreement 1e-9"},
        inputs={"eps_adversarial": EPS_ADV, "D_sq": D_SQ},
        rows=m.rows,
        notes="Proof of (22): the base case h_1 <= L D^2/2 needs gamma_0 = 1 (the printed rule "
              "leaves gamma_0 undefined), and the induction from tau = 1 to 2 uses gamma_1 = "
              "2/4, but the printed rule takes gamma_1 = 1, so x_2 is a vertex and h_2 can reach "
              "L D^2 / 2 > 2 L D^2 / 5. On the adversarial instance h_2 = (1 - eps)^2 / 2 = "
              "0.48 vs 0.4. With gamma_tau = 2/(tau + 3) from tau = 2 on, induction gives "
              "h_tau <= 2 L D^2 / (tau + 2), i.e. (22) up to the factor 5/4 that '<~' allows. "
              "The standard rule satisfies 2 L D^2/(tau + 3) for all tau >= 1 "
              "(k(k+2)(k+4) + (k+3)(k+4) <= (k+2)^2 (k+3)). L is the tangent-space curvature "
              "(intrinsic to F on the simplex); with the largest eigenvalue of the full R^k "
              "Hessian of (9)'s formula (which also contains Var(common part of log p_i)) the "
              "bound is looser and the printed rule may pass it: see *_full_hessian_L.")
