"""``sm.fig1`` and ``sm.fig3``: the numerical illustrations of the score-smoothing paper
([SM] Sec. 4.1, 4.2, Figs. 1 and 3, App. A.7), regenerated and judged by numbers.

sm.fig1 ([SM] Sec. 4.1, Fig. 1 centre/right, App. A.7): three-layer ReLU MLPs (torch) fitted to the
ESF of S = {-1, 1} at t = 0.1 with weight decay lambda = 0.005, 0.01, 0.02 (Adam, lr 1e-3, 1200
steps, batches of 1024 from p_t, loss E_{p_t}|s_NN - ESF|^2: the expectation in (4)). Each learned
curve is compared, in relative L2 on the plotted window, with shat_{t,tau} (9) at the tau that fits
best (grid + bounded refinement), with the ESF it was trained on, with sbar (15), with the exact
tau-smoothed ESF at its own best tau, and with the best straight line. "Looks like shat" is
measured as: the error against the best-fit shat is small in absolute terms and several times
smaller than against the ESF; the fitted tau grows with lambda.

sm.fig3 ([SM] Sec. 4.2, Fig. 3, App. A.7): d = 2, n = 4 points on the first axis, D = 1,
kappa = 0.4, x_{t0} ~ p_{t0}, t0 = 0.02, Euler in u = sqrt(t) with steps of 0.002 for four score
fields: (i) the exact ESF (14)/(19), (ii) its tau_t cube average (18) by Monte Carlo (512 offsets
per particle and step), (iii) shat (20) with tau_t = Delta - sqrt(kappa t), (iv) an MLP trained
with the shared trainer on (4). Measured: the fraction of particles ending farther than R_FAR
from every training point (memorization: 0; interpolation: the continuous mass of eq. (13)), the
second coordinate at t = 0, and W1 / KS of the first coordinate against the law of eq. (13)
extended to n points (atoms + density), its CDF by quadrature, with a Monte Carlo band from
samples of that law.

Independent routes (none is the code under test): the ESF of n = 2 points as (tanh(x/t) - x)/t
(eq. (6)) and of n points as eq. (14) written out with a log-sum-exp; shat as eq. (9) / (16),
(20) written out; the smoothed ESF of n = 2 through log cosh; the Monte Carlo cube average
against the exact smoothed ESF within its standard error; the Euler run on shat against the
closed-form flow map (exact: the trajectories are straight lines in (x, sqrt t), Prop. 6);
eq. (13) transcribed here, integrated by Gauss-Legendre, with atoms from normal CDFs.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

from ...theory import smoothing as sm
from .. import _plot
from ..record import Context, Record
from ..registry import claim
from ..verdicts import not_run, within
from ._common import Measured
from .sm_scores import eq9_literal

# ================================================================= shared routes =================
#: closed forms written here vs the toolkit (ESF, shat, smoothed ESF): rounding only. Relative to
#: the score scale Delta/t; a planted 0.1 % error is 1e6 times larger.
ROUTE_RTOL = 1e-9


def esf_two_points(x, t):
    """ESF of S = {-1, 1}: (xhat - x)/t with xhat = tanh(x/t) ([SM] eq. (6): the ratio
    (p_N(x-1) - p_N(x+1)) / (p_N(x-1) + p_N(x+1)) = tanh(x/t))."""
    return (np.tanh(x / t) - x) / t


def smoothed_esf_two_points(x, tau, t):
    """(tau * ESF)(x) for S = {-1, 1} ([SM] eq. (7) of (6)): log p_t(x) = c - x^2/(2t)
    + log cosh(x/t), so the window average is -x/t + [lc((x+tau)/t) - lc((x-tau)/t)]/(2 tau),
    lc(z) = log cosh z = |z| + log1p(exp(-2|z|)) - log 2."""
    def lc(z):
        a = np.abs(z)
        return a + np.log1p(np.exp(-2 * a)) - math.log(2.0)
    return -x / t + (lc((x + tau) / t) - lc((x - tau) / t)) / (2 * tau)


def esf_literal(x, y1, t):
    """ESF of points [y_k, 0, ..., 0] in R^d, eq. (14), (19) written out: first coordinate
    (sum_k y_k w_k - x_1)/t with w = softmax(-(x_1 - y_k)^2 / (2t)), others -x_i/t."""
    x = np.asarray(x, dtype=np.float64)
    logits = -(x[:, :1] - y1[None, :]) ** 2 / (2 * t)
    w = np.exp(logits - special.logsumexp(logits, axis=1, keepdims=True))
    out = -x / t
    out[:, 0] += (w @ y1) / t
    return out


def shat_literal(x, y1, tau, t):
    """shat_{t,tau} of (20) with the first coordinate from (16), written out case by case."""
    x = np.asarray(x, dtype=np.float64)
    n = y1.size
    delta = (y1[-1] - y1[0]) / (2 * (n - 1))
    a = y1[:-1] + delta
    z = x[:, 0]
    first = np.full(z.shape, np.nan)
    first = np.where(z <= a[0] - tau, (y1[0] - z) / t, first)
    first = np.where(z >= a[-1] + tau, (y1[-1] - z) / t, first)
    for k in range(1, n - 1):   # (y_k - x)/t on [a_{k-1} + tau, a_k - tau]
        first = np.where((z >= a[k - 1] + tau) & (z <= a[k] - tau), (y1[k] - z) / t, first)
    for k in range(n - 1):      # (Delta - tau)(x - a_k)/(tau t) on [a_k - tau, a_k + tau]
        first = np.where(np.abs(z - a[k]) <= tau, (delta - tau) * (z - a[k]) / (tau * t), first)
    out = -x / t
    out[:, 0] = first
    return out


def _ratio(a, b) -> float:
    """a / b as an error-over-tolerance: NaN if either is NaN, +inf if b <= 0 (no scale to
    compare with is a failure)."""
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b if b > 0 else math.inf


def rel_l2(a, b, w=None) -> float:
    """||a - b|| / ||a|| in L2(w) (w: quadrature weights; uniform if None)."""
    w = np.ones_like(a) if w is None else w
    return float(math.sqrt(np.sum(w * (a - b) ** 2) / np.sum(w * a * a)))


# ================================================================= sm.fig1 =======================
FIG1_T = 0.1
FIG1_POINTS = np.array([-1.0, 1.0])
FIG1_DECAYS = (0.005, 0.01, 0.02)
FIG1_PAPER_TAUS = (0.35, 0.42, 0.53)   # App. A.7, picked by eye for the paper's nets
FIG1_LEFT_TAU = 0.58                   # App. A.7, Fig. 1 left
FIG1_LR = 1e-3
FIG1_STEPS = 1200
FIG1_BATCH = 1024
#: quick mode: one seed, batches of 256 (same 1200 steps; ~3 s per net on one core instead of ~7)
FIG1_QUICK_BATCH = 256
#: "three-layer MLP": input -> 64 -> 64 -> output, ReLU (the paper gives neither width nor
#: activation; its curves are piecewise linear, which ReLU nets produce)
FIG1_HIDDEN = (64, 64)
FIG1_ACTIVATION = "relu"
#: the comparison window: the plotted range of Fig. 1 (the support of p_t plus margin), uniform
#: weights on 601 points (the p_t-weighted error is reported too)
FIG1_WINDOW = (-1.5, 1.5)
FIG1_GRID = 601
TAU_GRID = np.arange(0.005, 0.9951, 0.005)
#: "looks like shat": relative L2 error against the best-fit shat at most 10 % (a curve within
#: 10 % rms of another is indistinguishable at the scale of the figure) ...
LOOKS_LIKE_RTOL = 0.10
#: ... and at least 3 times smaller than the error against the ESF the net was trained on
BETTER_THAN_ESF = 3.0
#: the fitted tau must grow by at least one grid step (0.005) from one lambda to the next
TAU_STEP_MIN = 0.005


def train_fig1_net(decay: float, seed: int, *, steps: int = FIG1_STEPS, batch: int = FIG1_BATCH,
                   hidden=FIG1_HIDDEN, loss_factor: float = 1.0, device: str = "cpu"):
    """A ReLU MLP fitted to the ESF at t = 0.1 ([SM] App. A.7, Fig. 1 centre): Adam with L2
    regularization ``weight_decay`` = lambda (torch's Adam adds lambda theta to the gradient:
    "weight decay (i.e., L2 regularization on the model parameters)"), lr 1e-3, loss the batch
    mean of |s_NN(x) - ESF(x)|^2 over x ~ p_t, times ``loss_factor`` (``t`` gives the integrand
    of (4), t E|s - ESF|^2). The ESF targets come from the toolkit's path
    (``EmpiricalDistribution(S).path(VE()).score``) for all batches at once. Returns the net as a
    function of x (numpy in, numpy out). ``device``: where the net trains (the initialization is
    drawn on the CPU first, so it does not depend on the device)."""
    import torch

    from ...models import EmpiricalDistribution
    from ...processes import VE
    from ...training import ScoreMLP, torch_threads

    y = FIG1_POINTS
    t = FIG1_T
    rng = np.random.default_rng([seed, 11])
    x = y[rng.integers(0, y.size, size=steps * batch)] + math.sqrt(t) * rng.standard_normal(steps * batch)
    target = EmpiricalDistribution(y[:, None]).path(VE()).score(x[:, None], t)[:, 0]
    with torch_threads(1):
        torch.manual_seed(seed)
        net = ScoreMLP(1, hidden=hidden, activation=FIG1_ACTIVATION, time_embedding="identity",
                       parametrization="score", dtype=torch.float32)
        net = net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=FIG1_LR, weight_decay=float(decay))
        xt = torch.as_tensor(x, dtype=torch.float32, device=device)[:, None]
        tt = torch.as_tensor(target, dtype=torch.float32, device=device)[:, None]
        for k in range(steps):
            sl = slice(k * batch, (k + 1) * batch)
            loss = loss_factor * ((net(xt[sl], t) - tt[sl]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()

    def f(z):
        with torch.no_grad():
            zt = torch.as_tensor(np.asarray(z, dtype=np.float64).reshape(-1, 1),
                                 dtype=torch.float32, device=device)
            return net(zt, t).cpu().numpy()[:, 0].astype(np.float64)
    return f


def fit_tau(curve, family, xs, w=None):
    """argmin_tau rel_l2(curve, family(tau)) over TAU_GRID, refined by a bounded scalar search
    within one grid step; returns (tau, error)."""
    errs = np.array([rel_l2(curve, family(tau), w) for tau in TAU_GRID])
    if not np.all(np.isfinite(errs)):
        return math.nan, math.nan
    i = int(np.argmin(errs))
    lo, hi = TAU_GRID[max(i - 1, 0)], TAU_GRID[min(i + 1, TAU_GRID.size - 1)]
    r = optimize.minimize_scalar(lambda tau: rel_l2(curve, family(tau), w), bounds=(lo, hi),
                                 method="bounded", options={"xatol": 1e-5})
    return (float(r.x), float(r.fun)) if r.fun <= errs[i] else (float(TAU_GRID[i]), float(errs[i]))


def measure_fig1(seeds, *, steps: int = FIG1_STEPS, batch: int = FIG1_BATCH,
                 t_weighted_seeds=(), device: str = "cpu") -> tuple[Measured, dict]:
    """Train the nets for every (seed, lambda), fit tau, measure the errors; also check the
    toolkit's ESF, shat and smoothed ESF against the closed forms written here. For
    ``t_weighted_seeds`` the nets are also trained on t E|s - ESF|^2 (the integrand of (4));
    those rows are reported (``decides_verdict`` False), not judged."""
    out = Measured()
    y, t = FIG1_POINTS, FIG1_T
    xs = np.linspace(*FIG1_WINDOW, FIG1_GRID)
    pt = 0.5 * (stats.norm.pdf(xs, -1, math.sqrt(t)) + stats.norm.pdf(xs, 1, math.sqrt(t)))
    from ...models import EmpiricalDistribution
    from ...processes import VE

    esf = EmpiricalDistribution(y[:, None]).path(VE()).score(xs[:, None], t)[:, 0]
    sbar = sm.s_bar(xs, y, t)
    scale = ROUTE_RTOL / t  # Delta = 1
    out.add("esf_toolkit_vs_tanh_closed_form", np.abs(esf - esf_two_points(xs, t)) / scale)
    for tau in (0.05, 0.3, 0.58, 0.9):
        out.add("shat_vs_eq9_written_out", np.abs(sm.s_hat(xs, y, tau, t) - eq9_literal(xs, tau, t)) / scale,
                f"tau={tau}")
        out.add("smoothed_esf_vs_logcosh_closed_form",
                np.abs(sm.smoothed_esf(xs, y, tau, t) - smoothed_esf_two_points(xs, tau, t)) / scale,
                f"tau={tau}")
    curves = {}
    runs = [(seed, "E|s-ESF|^2", 1.0) for seed in seeds] + \
        [(seed, "t E|s-ESF|^2", t) for seed in t_weighted_seeds]
    for seed, loss_name, factor in runs:
        judged = factor == 1.0
        taus = []
        for lam in FIG1_DECAYS:
            g = train_fig1_net(lam, seed, steps=steps, batch=batch, loss_factor=factor,
                               device=device)(xs)
            if judged:
                curves[(seed, lam)] = g
            tau_b, e_b = fit_tau(g, lambda tau: sm.s_hat(xs, y, tau, t), xs)
            tau_s, e_s = fit_tau(g, lambda tau: sm.smoothed_esf(xs, y, tau, t), xs)
            tau_w, e_w = fit_tau(g, lambda tau: sm.s_hat(xs, y, tau, t), xs, pt)
            lin = np.polyfit(xs, g, 1) if np.all(np.isfinite(g)) else np.array([math.nan, math.nan])
            e_esf = rel_l2(g, esf)
            paper_tau = FIG1_PAPER_TAUS[FIG1_DECAYS.index(lam)]
            where = f"seed={seed}, lambda={lam}"
            if judged:
                out.add("nn_vs_best_shat_over_10pct", e_b / LOOKS_LIKE_RTOL, where)
                out.add("nn_vs_best_shat_over_third_of_nn_vs_esf", _ratio(e_b, e_esf / BETTER_THAN_ESF), where)
            taus.append(tau_b)
            out.rows.append({
                "seed": seed, "loss": loss_name, "decides_verdict": judged,
                "lambda": lam, "fitted_tau": tau_b, "paper_tau_by_eye": paper_tau,
                "relL2_vs_best_shat": e_b, "relL2_vs_esf": e_esf,
                "relL2_vs_sbar": rel_l2(g, sbar),
                "relL2_vs_shat_at_paper_tau": rel_l2(g, sm.s_hat(xs, y, paper_tau, t)),
                "fitted_tau_smoothed_esf": tau_s, "relL2_vs_best_smoothed_esf": e_s,
                "relL2_vs_best_line": rel_l2(g, np.polyval(lin, xs)),
                "fitted_tau_pt_weighted": tau_w, "relL2_pt_weighted_vs_best_shat": e_w,
                "relL2_pt_weighted_vs_esf": rel_l2(g, esf, pt)})
        for i in range(len(taus) - 1 if judged else 0):
            d = taus[i + 1] - taus[i]
            exc = (TAU_STEP_MIN / d if d > 0 else 2.0 + abs(d) / TAU_STEP_MIN) if math.isfinite(d) else math.nan
            out.add("fitted_tau_grows_with_lambda", exc,
                    f"seed={seed}, lambda {FIG1_DECAYS[i]} -> {FIG1_DECAYS[i + 1]}")
    fig = {"xs": xs, "esf": esf, "sbar": sbar, "curves": curves}
    return out, fig


def draw_fig1(path, fig, rows, seed):
    plt = _plot.pyplot()
    xs, y, t = fig["xs"], FIG1_POINTS, FIG1_T
    f, ax = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    ax[0].plot(xs, fig["esf"], label="ESF")
    ax[0].plot(xs, fig["sbar"], "--", label=r"$\bar s_t$")
    ax[0].plot(xs, sm.s_hat(xs, y, FIG1_LEFT_TAU, t), label=rf"$\hat s_{{t,\tau}}$, $\tau$={FIG1_LEFT_TAU}")
    ax[0].set_title(f"t = {t}")
    colors = ["C0", "C1", "C2"]
    for lam, c in zip(FIG1_DECAYS, colors):
        r = next(r for r in rows if r["seed"] == seed and r["lambda"] == lam and r["decides_verdict"])
        ax[1].plot(xs, fig["curves"][(seed, lam)], c, label=rf"NN, $\lambda$={lam}")
        ax[2].plot(xs, sm.s_hat(xs, y, r["fitted_tau"], t), c,
                   label=rf"$\hat s$, fitted $\tau$={r['fitted_tau']:.3f} (paper {r['paper_tau_by_eye']})")
        ax[2].plot(xs, fig["curves"][(seed, lam)], c + ":", lw=1)
    ax[1].set_title("MLPs trained with weight decay")
    ax[2].set_title(r"$\hat s_{t,\tau}$ at the fitted $\tau$ (dotted: NN)")
    for a in ax:
        a.set_xlabel("x")
        a.axhline(0, color="k", lw=0.5)
        a.legend(fontsize=7)
    ax[0].set_ylim(-8, 8)
    _plot.save(f, path)


@claim("sm.fig1", title="MLPs trained with weight decay look like shat_{t,tau} for some tau, tau "
                        "growing with the decay (Fig. 1)",
       source="[SM] Sec. 4.1, Fig. 1, App. A.7")
def check_fig1(ctx: Context) -> Record:
    """Three ReLU MLPs (64-64) fitted to the ESF of {-1, 1} at t = 0.1 with weight decay
    0.005, 0.01, 0.02 (Adam, lr 1e-3, 1200 steps, batch 1024 and 3 seeds; quick: batch 256, 1 seed);
    tau fitted by least squares (relative L2 on [-1.5, 1.5]). Confirmed iff, for every net, the
    error against the best-fit shat is <= 10 % and <= 1/3 of the error against the ESF, and the
    fitted tau grows with lambda (by >= 0.005 per step) in every seed."""
    seeds = [ctx.seed + k for k in range(ctx.size(1, 3))]
    batch = ctx.size(FIG1_QUICK_BATCH, FIG1_BATCH)
    m, fig = measure_fig1(seeds, batch=batch, t_weighted_seeds=() if ctx.quick else seeds[:1],
                          device=ctx.device)
    ctx.figure("fig1", draw_fig1, fig, m.rows, seeds[0])
    taus = {f"seed={r['seed']}, lambda={r['lambda']}": r["fitted_tau"] for r in m.rows if r["decides_verdict"]}
    measured = {"fitted_taus": taus, "worst": m.worst()}
    tw = [r for r in m.rows if not r["decides_verdict"]]
    if tw:
        measured["t_weighted_loss_taus_and_errors (reported)"] = {
            f"seed={r['seed']}, lambda={r['lambda']}": [r["fitted_tau"], r["relL2_vs_best_shat"]] for r in tw}
    else:
        measured["t_weighted_loss_variant"] = not_run("quick mode (full mode trains it for one seed)")
    return ctx.verdict(
        within(m.excess),
        compared=[("NN score (torch MLP, weight decay lambda)", "shat_{t,tau} (9) at the least-squares tau"),
                  ("NN score", "ESF (6), sbar (15), best smoothed ESF, best straight line"),
                  ("toolkit ESF / s_hat / smoothed_esf", "tanh form of (6) / (9) written out / log cosh form")],
        claimed={"Sec. 4.1": "NN-learned scores are nearly piecewise linear and matched closely by "
                             "shat_{t,tau}, tau increasing with the regularization strength",
                 "App. A.7 taus (by eye)": dict(zip(map(str, FIG1_DECAYS), FIG1_PAPER_TAUS))},
        measured=measured,
        tolerance={"nn_vs_best_shat_rel_l2": LOOKS_LIKE_RTOL, "better_than_esf_factor": BETTER_THAN_ESF,
                   "tau_step_min": TAU_STEP_MIN, "route_rtol_of_1/t": ROUTE_RTOL},
        inputs={"t": FIG1_T, "points": FIG1_POINTS.tolist(), "decays": list(FIG1_DECAYS),
                "hidden": list(FIG1_HIDDEN), "activation": FIG1_ACTIVATION, "lr": FIG1_LR,
                "steps": FIG1_STEPS, "batch": batch, "paper_batch": FIG1_BATCH, "seeds": seeds,
                "window": list(FIG1_WINDOW), "grid_points": FIG1_GRID},
        rows=m.rows,
        notes="The paper's taus (0.35, 0.42, 0.53) were picked by eye for nets of unstated width "
              "and activation; 64-64 ReLU nets on E|s - ESF|^2 (A.7's wording) fit smaller taus "
              "(~0.23, 0.26, 0.30; 32-32 and 128-128 nets give the same within 0.03). Trained on "
              "t E|s - ESF|^2 (the integrand of (4); with Adam this strengthens the L2 term "
              "1/t = 10 times) they fit ~0.38, 0.46, 0.55, close to the paper's, but the "
              "lambda = 0.02 net then deviates ~11 % from shat (full mode reports this variant; "
              "it does not decide the verdict). Regularization is torch "
              "Adam's weight_decay (L2 added to the gradient), as 'L2 regularization' in A.7.")


# ================================================================= sm.fig3 =======================
FIG3_POINTS1 = np.linspace(-1.0, 1.0, 4)           # n = 4, D = 1: Delta = 1/3
FIG3_POINTS = np.column_stack([FIG3_POINTS1, np.zeros(4)])
FIG3_KAPPA = 0.4
FIG3_T0 = 0.02
FIG3_DU = 0.002                                    # Euler step in u = sqrt(t)
FIG3_PARTICLES = 4096
FIG3_MC = 512                                      # Monte Carlo offsets per cube average
#: quick mode: the ESF and shat runs keep 4096 particles; the Monte Carlo run uses the first 256
#: of them, and the NN run does not run (training takes ~20 s on a loaded core)
FIG3_QUICK_MC_PARTICLES = 256
FIG3_NN_HIDDEN = (64, 64)
FIG3_NN_LR = 0.004
FIG3_NN_BATCH = 16
FIG3_NN_STEPS = 3000
FIG3_NN_TMIN = 1e-6                                # the paper samples t ~ U[0, t0]; log t needs t > 0
#: "ends on a training point": within R_FAR (0.06 Delta) of one. The ESF run ends within ~1e-9.
R_FAR = 0.02
#: memorization: at most 1 % of the ESF run's particles farther than R_FAR from every point
MEMORIZE_MAX_FAR = 0.01
#: interpolation: at least half the mass that eq. (13) puts farther than R_FAR from every point
#: (0.35 of the particles at t0 = 0.02, kappa = 0.4) ends there
INTERPOLATE_MIN_REL = 0.5
#: the second coordinate at t = 0: rms at most 0.2 sqrt(t0) (a 5x shrink of its spread at t0)
X2_SHRINK_MAX = 0.2
#: shat run vs the fraction predicted by eq. (13): binomial standard errors
FRAC_Z = 4.0
#: W1 band: the largest W1 of FIG3_BAND_REPS samples of the eq. (13) law itself (same size)
FIG3_BAND_REPS = 100
#: (ii) "remains close" to (iii) (whose end law is eq. (13)): from the same starting particles,
#: the mean |x1(ii) - x1(iii)| at t = 0 is at most 1/3 of the mean |x1(i) - x1(iii)| (the
#: memorizing run). W1 alone cannot tell eq. (13) from p_0^(n) at a few hundred particles: 60 %
#: of eq. (13)'s mass sits on the atoms.
SMOOTHED_PAIRED_REL = 1.0 / 3.0
#: MC cube average vs the exact smoothed ESF: |difference| <= 5 standard errors
MC_Z = 5.0
#: Euler in u on shat vs the closed-form flow map (the trajectories are straight lines in
#: (x, u), so Euler is exact up to rounding: ~100 steps of 1e-16 relative)
EULER_FLOW_ATOL = 1e-10
#: KS critical value at level 0.001 (Kolmogorov asymptotic 1.949/sqrt(N); conservative with atoms)
KS_C = 1.9495


def u_grid(t0=FIG3_T0, du=FIG3_DU):
    """u = sqrt(t) from sqrt(t0) down to 0 in steps of du, with u = sqrt(t0/2) on the grid (the
    middle snapshot): the last step before each of sqrt(t0/2) and 0 is shortened."""
    u0, um = math.sqrt(t0), math.sqrt(t0 / 2)
    a = np.arange(u0, um, -du)
    b = np.arange(um, 0.0, -du)
    return np.concatenate([a, b, [0.0]]), int(a.size)


def euler_sqrt_t(field, x0, ugrid, i_mid):
    """Backward Euler for dx/dt = -s(x, t)/2 ([SM] (2)) in u = sqrt(t): dx/du = -u s(x, u^2), so
    x(u - h) = x(u) + h u s(x(u), u^2). Returns the snapshots at t0, t0/2, 0. A field that
    returns a non-finite value ends the run: the remaining snapshots are NaN (a finding for the
    verdict helpers, not a crash)."""
    x = np.array(x0, dtype=np.float64)
    snaps = [x.copy()]
    for i, (u, un) in enumerate(zip(ugrid[:-1], ugrid[1:])):
        x = x + (u - un) * u * np.asarray(field(x, u * u), dtype=np.float64)
        if not np.all(np.isfinite(x)):
            x = np.full_like(x, np.nan)
            snaps += [x.copy() for _ in range(3 - len(snaps))]
            return snaps
        if i + 1 == i_mid:
            snaps.append(x.copy())
    snaps.append(x)
    return snaps


def mc_smoothed_field(path, kappa, n_mc, rng, delta):
    """(tau_t * ESF)(x) of (18) by Monte Carlo: the mean of the ESF at x + r_j, r_j ~ U[-tau_t,
    tau_t]^2, j = 1..n_mc, fresh offsets per particle and call ([SM] Sec. 4.2 (ii)). The paper
    truncates large sampled values; the toolkit's ESF (a softmax) is bounded by max|y - x|/t, so
    nothing is truncated here. Returns the field and, via ``field.se``, the standard error of
    the last call."""
    def field(x, t):
        tau = delta - math.sqrt(kappa * t)
        r = rng.uniform(-tau, tau, size=(x.shape[0], n_mc, x.shape[1]))
        s = path.score((x[:, None, :] + r).reshape(-1, x.shape[1]), t).reshape(x.shape[0], n_mc, x.shape[1])
        field.se = s.std(axis=1, ddof=1) / math.sqrt(n_mc)
        return s.mean(axis=1)
    field.se = None
    return field


class Eq13Law:
    """The law of x_{0,1} under (11) from x_{t0,1} ~ p_{t0}, [SM] eq. (13) extended to n uniform
    points (Sec. 3.3), transcribed here: atoms at y_k with w_1 = P(x <= y_1 + rho),
    w_k = P(|x - y_k| <= rho), w_n = P(x >= y_n - rho), rho = sqrt(kappa t), and on [y_k, y_{k+1}]
    the density (tau/Delta) p_t(a_k + (tau/Delta)(z - a_k)) (for n = 2: tau p_t(tau z), eq. (13)).
    CDF by 40-point Gauss-Legendre on [y_k, z]."""

    def __init__(self, y, t, kappa):
        self.y, self.t, self.kappa = np.asarray(y, float), float(t), float(kappa)
        n = self.y.size
        self.delta = (self.y[-1] - self.y[0]) / (2 * (n - 1))
        self.rho = math.sqrt(kappa * t)
        self.tau = self.delta - self.rho
        cdf = self.mixture_cdf
        w = np.empty(n)
        w[0] = cdf(self.y[0] + self.rho)
        w[-1] = 1.0 - cdf(self.y[-1] - self.rho)
        for k in range(1, n - 1):
            w[k] = cdf(self.y[k] + self.rho) - cdf(self.y[k] - self.rho)
        self.atoms = w
        self.gl = np.polynomial.legendre.leggauss(40)
        self.seg_mass = np.array([self._ac_mass(k, self.y[k + 1]) for k in range(n - 1)])

    def mixture_cdf(self, x):
        return special.ndtr((np.asarray(x, float)[..., None] - self.y) / math.sqrt(self.t)).mean(axis=-1)

    def mixture_pdf(self, x):
        return stats.norm.pdf(np.asarray(x, float)[..., None], self.y, math.sqrt(self.t)).mean(axis=-1)

    def density(self, z):
        z = np.asarray(z, float)
        k = np.clip(np.floor((z - self.y[0]) / (2 * self.delta)), 0, self.y.size - 2).astype(int)
        a = self.y[k] + self.delta
        r = self.tau / self.delta
        inside = (z >= self.y[0]) & (z <= self.y[-1])
        return np.where(inside, r * self.mixture_pdf(a + r * (z - a)), 0.0)

    def _ac_mass(self, k, z):
        """int_{y_k}^{z} density, z in [y_k, y_{k+1}], by Gauss-Legendre (z may be an array)."""
        z = np.asarray(z, float)
        lo = self.y[k]
        xg, wg = self.gl
        h = 0.5 * (z - lo)
        nodes = lo + h[..., None] * (xg + 1)
        a = self.y[k] + self.delta
        r = self.tau / self.delta
        return (h[..., None] * wg * r * self.mixture_pdf(a + r * (nodes - a))).sum(axis=-1)

    def cdf(self, z, *, left=False):
        """P(X <= z) (P(X < z) with ``left``), atoms included."""
        z = np.asarray(z, float)
        at = self.atoms * ((z[..., None] > self.y) if left else (z[..., None] >= self.y))
        k = np.clip(np.floor((z - self.y[0]) / (2 * self.delta)), 0, self.y.size - 2).astype(int)
        full = np.concatenate([[0.0], np.cumsum(self.seg_mass)])
        zc = np.clip(z, self.y[0], self.y[-1])
        ac = full[k] + self._ac_mass_vec(k, zc)
        return at.sum(axis=-1) + np.where(z < self.y[0], 0.0, ac)

    def _ac_mass_vec(self, k, z):
        out = np.empty(z.shape)
        for kk in range(self.y.size - 1):
            sel = k == kk
            if np.any(sel):
                out[sel] = self._ac_mass(kk, z[sel])
        return out

    def discretized(self, cells: int = 4000):
        """(support, weights): the atoms plus the continuous part lumped at cell midpoints of
        width (y_n - y_1)/cells (W1 error <= half a cell: 2.5e-4 for the default)."""
        e = np.linspace(self.y[0], self.y[-1], cells + 1)
        m = np.diff(self.cdf(e, left=True) - self.atoms_below(e))
        mids = 0.5 * (e[1:] + e[:-1])
        return np.concatenate([self.y, mids]), np.concatenate([self.atoms, m])

    def atoms_below(self, z):
        return (self.atoms * (np.asarray(z)[..., None] > self.y)).sum(axis=-1)

    def sample(self, n, rng):
        """x_t ~ p_t pushed through phi_{0|t} as printed after (17): (Delta x - a_k rho)/(Delta - rho)
        on [y_k + rho, y_{k+1} - rho], else the nearest y_k."""
        x = self.y[rng.integers(0, self.y.size, size=n)] + math.sqrt(self.t) * rng.standard_normal(n)
        k = np.clip(np.floor((x - self.y[0]) / (2 * self.delta)), 0, self.y.size - 2).astype(int)
        a = self.y[k] + self.delta
        inner = np.abs(x - a) <= self.delta - self.rho
        near = self.y[np.argmin(np.abs(x[:, None] - self.y), axis=1)]
        return np.where(inner, (self.delta * x - a * self.rho) / (self.delta - self.rho), near)

    def far_fraction(self, r):
        """P(min_k |X - y_k| > r): the continuous mass farther than r from every atom."""
        tot = 0.0
        for k in range(self.y.size - 1):
            lo, hi = self.y[k] + r, self.y[k + 1] - r
            tot += float(self.cdf(hi, left=True) - self.cdf(lo))
        return tot


def w1_to_law(x, support, weights) -> float:
    """W1 between the samples x and a discrete law (scipy.stats.wasserstein_distance); NaN if x
    holds a non-finite value."""
    x = np.asarray(x, float)
    if not np.all(np.isfinite(x)):
        return math.nan
    return float(stats.wasserstein_distance(x, support, v_weights=weights))


def ks_to_law(x, law: Eq13Law, snap=1e-9) -> float:
    """sup_z |F_N(z) - F(z)| with the atoms of F (values within ``snap`` of an atom are the atom:
    Euler ends there up to rounding). NaN for non-finite samples."""
    x = np.sort(np.asarray(x, float))
    if not np.all(np.isfinite(x)):
        return math.nan
    d = np.abs(x[:, None] - law.y)
    j = np.argmin(d, axis=1)
    x = np.where(d[np.arange(x.size), j] <= snap, law.y[j], x)
    vals, counts = np.unique(x, return_counts=True)
    n = x.size
    right = np.cumsum(counts) / n
    left = right - counts / n
    return float(max(np.max(np.abs(right - law.cdf(vals))), np.max(np.abs(left - law.cdf(vals, left=True)))))


class _LogTimeMLP:
    """Factory for the [SM] App. A.7 net: ScoreMLP in the noise parametrization (the score
    rescaled by sqrt t: s = -eps_hat / sqrt(t)) whose time input is log t."""

    @staticmethod
    def make(hidden, seed):
        import torch

        from ...processes import VE
        from ...training import ScoreMLP

        class LogTimeScoreMLP(ScoreMLP):
            def embed(self, t):
                return torch.log(t)[:, None]

            def config(self):
                c = super().config()
                c["class"] = "LogTimeScoreMLP"
                return c

        torch.manual_seed(seed)
        return LogTimeScoreMLP(2, hidden=hidden, activation="relu", time_embedding="identity",
                               process=VE())


def train_fig3_net(seed: int, *, steps: int = FIG3_NN_STEPS, device: str = "cpu"):
    """[SM] App. A.7 (Fig. 3 (iv)): MLP on (log t, x), score rescaled by sqrt t, trained with
    the shared trainer on (4) with T = t0 (weight omega_t = t: ``weighting="default"`` for VE),
    t ~ U[1e-6, t0], Adam, lr 0.004, batch 16, no regularization."""
    from ...processes import VE
    from ...training import ArrayData, train_dsm

    net = _LogTimeMLP.make(FIG3_NN_HIDDEN, seed)
    res = train_dsm(net, ArrayData(FIG3_POINTS), VE(), steps=steps, batch_size=FIG3_NN_BATCH,
                    lr=FIG3_NN_LR, t_min=FIG3_NN_TMIN, T=FIG3_T0, seed=seed, optimizer="adam",
                    progress=False, cache=False, device=device)
    return res.net.as_field()


def measure_fig3(rng, *, n_particles=FIG3_PARTICLES, n_mc_particles=FIG3_PARTICLES,
                 n_mc=FIG3_MC, nn_steps=FIG3_NN_STEPS, run_nn=True, seed=0, device="cpu"):
    from ...models import EmpiricalDistribution
    from ...processes import VE
    from ...theory.smoothing_flow import flow_map_d

    out = Measured()
    y1, Y, kappa, t0 = FIG3_POINTS1, FIG3_POINTS, FIG3_KAPPA, FIG3_T0
    delta = sm.half_spacing(y1)
    path = EmpiricalDistribution(Y).path(VE())
    shat = sm.SmoothedScore(Y, kappa)

    # ---- independent routes for the fields ---------------------------------------------------
    xt = Y[rng.integers(0, 4, 400)] + 0.3 * rng.standard_normal((400, 2))
    for t in (t0, t0 / 7, 1e-4):
        tau = delta - math.sqrt(kappa * t)
        sc = ROUTE_RTOL * delta / t
        out.add("esf_toolkit_vs_eq14_written_out", np.abs(path.score(xt, t) - esf_literal(xt, y1, t)) / sc, f"t={t}")
        out.add("shat_field_vs_eq16_20_written_out", np.abs(shat(xt, t) - shat_literal(xt, y1, tau, t)) / sc, f"t={t}")
    mc_check = mc_smoothed_field(path, kappa, n_mc, rng, delta)
    xm = xt[:64]
    for t in (t0, t0 / 4):
        tau = delta - math.sqrt(kappa * t)
        got = mc_check(xm, t)
        exact = np.column_stack([sm.smoothed_esf(xm[:, 0], y1, tau, t), -xm[:, 1] / t])
        z = np.abs(got - exact) / np.maximum(mc_check.se, 1e-300)
        out.add("mc_cube_average_vs_exact_smoothed_esf_in_se", z / MC_Z, f"t={t}")

    # ---- the four runs ----------------------------------------------------------------------
    x0 = Y[rng.integers(0, 4, n_particles)] + math.sqrt(t0) * rng.standard_normal((n_particles, 2))
    ug, i_mid = u_grid()
    runs = {"(i) exact ESF": (lambda x, t: path.score(x, t), x0),
            "(ii) tau_t-smoothed ESF (MC)": (mc_smoothed_field(path, kappa, n_mc, rng, delta), x0[:n_mc_particles]),
            "(iii) shat": (lambda x, t: shat(x, t), x0)}
    if run_nn:
        runs["(iv) NN"] = (train_fig3_net(seed, steps=nn_steps, device=device), x0)
    snaps = {name: euler_sqrt_t(f, xs, ug, i_mid) for name, (f, xs) in runs.items()}
    closed = flow_map_d(x0, 0.0, t0, Y, kappa)
    out.add("euler_shat_vs_closed_flow_map", np.abs(snaps["(iii) shat"][-1] - closed) / EULER_FLOW_ATOL)

    law = Eq13Law(y1, t0, kappa)
    out.add("eq13_total_mass_is_one", abs(law.atoms.sum() + law.seg_mass.sum() - 1.0) / 1e-10)
    support, weights = law.discretized()
    pred_far = law.far_fraction(R_FAR)
    memorized_w1 = float(stats.wasserstein_distance(y1, support, v_weights=weights))
    bands = {}

    def band(n):
        if n not in bands:
            bands[n] = max(w1_to_law(law.sample(n, rng), support, weights) for _ in range(FIG3_BAND_REPS))
        return bands[n]

    rows = []
    for name, sn in snaps.items():
        xe = sn[-1]
        n = xe.shape[0]
        dist = np.min(np.linalg.norm(xe[:, None, :] - Y[None], axis=2), axis=1)
        far = float(np.mean(dist > R_FAR)) if np.all(np.isfinite(xe)) else math.nan
        rms2 = [float(np.sqrt(np.mean(s[:, 1] ** 2))) for s in sn]
        w1 = w1_to_law(xe[:, 0], support, weights)
        ks = ks_to_law(xe[:, 0], law)
        row = {"run": name, "particles": n, "far_fraction": far, "rms_x2_t0_t0/2_0": rms2,
               "W1_x1_vs_eq13": w1, "KS_x1_vs_eq13": ks, "W1_band_eq13_samples": band(n),
               "KS_critical_0.001": KS_C / math.sqrt(n)}
        if name.startswith("(i)"):
            out.add("memorization_far_fraction_over_1pct", far / MEMORIZE_MAX_FAR, name)
        else:
            need = INTERPOLATE_MIN_REL * pred_far
            out.add("interpolation_far_fraction_over_half_eq13",
                    need / far if far > 0 else (math.inf if far == 0 else math.nan), name)
            out.add("x2_rms_at_0_over_0.2_sqrt_t0", rms2[-1] / (X2_SHRINK_MAX * math.sqrt(t0)), name)
        if name.startswith("(iii)"):
            se = math.sqrt(pred_far * (1 - pred_far) / n)
            out.add("shat_far_fraction_vs_eq13_in_se", _ratio(abs(far - pred_far), FRAC_Z * se), name)
            out.add("shat_W1_vs_eq13_over_band", _ratio(w1, band(n)), name)
            out.add("shat_KS_vs_eq13_over_critical", ks / (KS_C / math.sqrt(n)), name)
        if not name.startswith("(iii)"):
            # paired with the shat run (same starting particles): mean |x1 - x1(iii)| at t = 0
            ref = snaps["(iii) shat"][-1][:n, 0]
            row["mean_abs_x1_minus_shat_run"] = float(np.mean(np.abs(xe[:, 0] - ref)))
        rows.append(row)
    paired = {r["run"]: r["mean_abs_x1_minus_shat_run"] for r in rows if "mean_abs_x1_minus_shat_run" in r}
    n_mc_run = snaps["(ii) tau_t-smoothed ESF (MC)"][-1].shape[0]
    esf_paired = float(np.mean(np.abs(snaps["(i) exact ESF"][-1][:n_mc_run, 0]
                                      - snaps["(iii) shat"][-1][:n_mc_run, 0])))
    out.add("smoothed_vs_shat_paired_over_third_of_esf_vs_shat",
            _ratio(paired["(ii) tau_t-smoothed ESF (MC)"], SMOOTHED_PAIRED_REL * esf_paired),
            "(ii) vs (iii), first coordinate at t = 0")
    out.rows = rows
    out.numbers = {"eq13_far_fraction": pred_far, "eq13_atom_weights": law.atoms.tolist(),
                   "eq13_continuous_mass": float(law.seg_mass.sum()),
                   "W1_memorized_law_vs_eq13": memorized_w1, "tau_t0": law.tau,
                   "euler_steps": int(ug.size - 1),
                   "paired_mean_abs_x1_vs_shat_run": paired,
                   "paired_mean_abs_x1_esf_vs_shat_run_on_mc_particles": esf_paired}
    return out, snaps, law


def draw_fig3(path, snaps, law):
    plt = _plot.pyplot()
    names = list(snaps)
    labels = ["t = t0", "t = t0/2", "t = 0"]
    f, ax = plt.subplots(6, len(names), figsize=(3.2 * len(names), 13), squeeze=False)
    zs = np.linspace(-1.5, 1.5, 601)
    pt0 = law.mixture_pdf(zs)
    for j, name in enumerate(names):
        for i in range(3):
            x = snaps[name][i]
            a, h = ax[2 * i, j], ax[2 * i + 1, j]
            a.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
            a.scatter(FIG3_POINTS1, np.zeros(4), s=12, c="r", marker="x")
            a.set_xlim(-1.5, 1.5)
            a.set_ylim(-0.5, 0.5)
            a.set_title(f"{name}, {labels[i]}", fontsize=8)
            h.hist(x[:, 0], bins=120, range=(-1.5, 1.5), density=True, alpha=0.6)
            if i == 0:
                h.plot(zs, pt0, "b", lw=1)
            if i == 2:
                h.plot(zs, law.density(zs), "r", lw=1)
            h.set_ylim(0, 3)
    _plot.save(f, path)


@claim("sm.fig3", title="d = 2, n = 4: the exact ESF memorizes, smoothed scores (tau_t-smoothed ESF, "
                        "shat, NN) interpolate along the line (Fig. 3)",
       source="[SM] Sec. 4.2, Fig. 3, App. A.7, eq. (13), (18), (20)")
def check_fig3(ctx: Context) -> Record:
    """Four Euler runs in sqrt(t) (step 0.002) from 4096 draws of p_{t0}, t0 = 0.02: (i) the
    exact ESF must leave <= 1 % of particles farther than 0.02 from every training point;
    (ii) the MC tau_t-smoothed ESF, (iii) shat and (iv) the NN must leave there at least half
    the mass eq. (13) puts there, and shrink the second coordinate to rms <= 0.2 sqrt(t0);
    (iii) must match eq. (13) (far fraction within 4 binomial se, W1 within the band of samples
    of that law, KS below the 0.001 critical value); (ii) must stay close to (iii): paired mean
    |x1(ii) - x1(iii)| <= 1/3 of the paired mean |x1(i) - x1(iii)|. Quick mode: (ii) on the first
    256 particles, (iv) not run (full mode only)."""
    rng = ctx.rng()
    quick = ctx.quick
    m, snaps, law = measure_fig3(rng, n_particles=FIG3_PARTICLES,
                                 n_mc_particles=FIG3_QUICK_MC_PARTICLES if quick else FIG3_PARTICLES,
                                 run_nn=not quick, seed=ctx.seed, device=ctx.device)
    ctx.figure("fig3", draw_fig3, snaps, law)
    measured = {"worst": m.worst(), "eq13": m.numbers,
                "far_fraction": {r["run"]: r["far_fraction"] for r in m.rows},
                "W1_x1_vs_eq13": {r["run"]: r["W1_x1_vs_eq13"] for r in m.rows}}
    if quick:
        measured["nn_run"] = not_run("quick mode: training the NN takes ~20 s (full mode runs it)")
    return ctx.verdict(
        within(m.excess),
        compared=[("final particles of each run", "training points (far fraction at r = 0.02)"),
                  ("(ii), (i) at t = 0", "(iii) at t = 0 from the same particles (paired mean |dx1|)"),
                  ("first coordinate at t = 0", "eq. (13) law (atoms + density, quadrature CDF), "
                                                "W1 band from samples of it"),
                  ("Euler run on shat", "closed-form flow map (Prop. 6)"),
                  ("MC cube average (18)", "exact smoothed ESF (log p_t difference)"),
                  ("toolkit ESF / SmoothedScore", "(14)/(19) and (16)/(20) written out")],
        claimed={"Sec. 4.2": "(i) collapses onto the training points; (ii), (iii) keep a positive "
                             "spread along the first axis, matched by eq. (13), while the second "
                             "coordinate shrinks to 0; (iv) interpolates similarly"},
        measured=measured,
        tolerance={"r_far": R_FAR, "memorize_max_far": MEMORIZE_MAX_FAR,
                   "interpolate_min_rel_of_eq13": INTERPOLATE_MIN_REL, "x2_rms_max_over_sqrt_t0": X2_SHRINK_MAX,
                   "far_fraction_z": FRAC_Z, "w1_band_reps": FIG3_BAND_REPS,
                   "smoothed_paired_rel": SMOOTHED_PAIRED_REL, "mc_z": MC_Z, "ks_c": KS_C,
                   "euler_flow_atol": EULER_FLOW_ATOL, "route_rtol": ROUTE_RTOL},
        inputs={"points": FIG3_POINTS.tolist(), "kappa": FIG3_KAPPA, "t0": FIG3_T0, "du": FIG3_DU,
                "particles": FIG3_PARTICLES,
                "mc_particles": FIG3_QUICK_MC_PARTICLES if quick else FIG3_PARTICLES,
                "mc_samples": FIG3_MC, "nn": {"hidden": list(FIG3_NN_HIDDEN), "lr": FIG3_NN_LR,
                                              "batch": FIG3_NN_BATCH, "steps": FIG3_NN_STEPS,
                                              "ran": not quick}},
        rows=m.rows,
        notes="Euler in u = sqrt(t) is exact for shat (straight trajectories), so run (iii) is the "
              "closed-form pushforward; (ii) differs from shat by O(1) near the band edges at "
              "kappa = 0.4 (Prop. 2: the loss gap is (n-1)/n F(sqrt kappa)), and its MC noise "
              "leaves the second coordinate slightly positive, as the paper says.")
