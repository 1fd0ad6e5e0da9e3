"""``sf.table1``: the 1-D bimodal experiment of [SF] Sec. 5.1 (Tables 1 and 4, Figures 2, 4-6):
ScoreFusion against a score network trained from scratch on n target samples.

Settings (the paper prints none; the authors' public code has two, quoted in issue 10):

* ``notebook`` (the reproduction, two auxiliaries as in Table 4): target
  0.6 N(-6, 0.8^2) + 0.4 N(6, 0.8^2); auxiliaries 0.5 N(-3, 1) + 0.5 N(10, 1) and
  0.7 N(-7, 1) + 0.3 N(9, 1);
* ``scripts`` (three auxiliaries): target 0.45 N(-7, 1) + 0.55 N(6.5, 1); auxiliaries
  0.4 N(7, 1) + 0.6 N(-9, 1), 0.5 N(-3, 1) + 0.5 N(10, 1), 0.4 N(-5, 1) + 0.6 N(3, 1);
* ``hull``: the target *is* a KL barycenter of the notebook auxiliaries (lambda = (0.6, 0.4),
  sampled exactly by rejection), so Assumption 3 holds with epsilon_0 = 0.

All under Song et al.'s VE SDE g(t) = 25^t on [0, 1] (``VE(sigma=25)``), reverse-time
Euler-Maruyama from N(0, v(1)) to t = 1e-3 as in their code.

Standardization. The authors standardize every data set by its own sample mean and standard
deviation. A score model is then a model of *its own* standardized coordinates, and the VE noise
is not scale-equivariant, so scores from different frames cannot be added. Here: the baseline
standardizes its n samples by their own mean and sd (as the authors); ScoreFusion works in one
fixed frame z = x / FRAME_SCALE shared by the auxiliaries and the target samples (exact
auxiliaries are transformed in closed form), and its samples are mapped back. W1 is reported in
the original units.

Metric: scipy's ``wasserstein_distance`` between 8096 model samples and 8096 fresh ground-truth
samples, over 10 independent draws (mean and standard error), as Table 1's caption says.
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy.stats import wasserstein_distance

from ... import fusion
from ...models import Gaussian, GaussianMixture
from ...processes import VE
from ...samplers import sample_euler_maruyama
from ..record import Context, Record
from ..registry import claim
from ..verdicts import Verdict, not_run

T = 1.0
T_EPS = 1e-3  # the generative process stops at t = 1e-3 (Song et al.'s eps)
T_TILDE = 0.5  # the regression horizon of Algorithm 1 (the paper does not print its T~)
FRAME_SCALE = 6.0
SIGMA = 25.0
DRAW = 8096
N_DRAWS = 10
PAPER_TABLE4 = {  # n: (baseline mean, se, ScoreFusion mean, se, lambda*)
    32: (106.93, 1.43, 0.39, 0.02, (0.62, 0.38)),
    64: (13.46, 0.28, 0.51, 0.03, (0.65, 0.35)),
    128: (16.74, 0.27, 0.36, 0.02, (0.46, 0.54)),
    256: (2.13, 0.12, 0.58, 0.03, (0.68, 0.32)),
    512: (0.55, 0.04, 0.38, 0.02, (0.61, 0.39)),
    1024: (0.15, 0.02, 0.30, 0.02, (0.58, 0.42)),
}
SETTINGS = {
    "notebook": {"target": ([0.6, 0.4], [-6.0, 6.0], [0.64, 0.64]),
                 "aux": [([0.5, 0.5], [-3.0, 10.0], [1.0, 1.0]),
                         ([0.7, 0.3], [-7.0, 9.0], [1.0, 1.0])]},
    "scripts": {"target": ([0.45, 0.55], [-7.0, 6.5], [1.0, 1.0]),
                "aux": [([0.4, 0.6], [7.0, -9.0], [1.0, 1.0]),
                        ([0.5, 0.5], [-3.0, 10.0], [1.0, 1.0]),
                        ([0.4, 0.6], [-5.0, 3.0], [1.0, 1.0])]},
    "hull": {"target": "barycenter", "lam": (0.6, 0.4),
             "aux": [([0.5, 0.5], [-3.0, 10.0], [1.0, 1.0]),
                     ([0.7, 0.3], [-7.0, 9.0], [1.0, 1.0])]},
}


def _mix(spec, scale=1.0):
    w, m, v = (np.asarray(a, dtype=np.float64) for a in spec)
    return GaussianMixture(w, (m / scale)[:, None], v / scale**2, covariance_type="spherical")


def _standardized(law: GaussianMixture) -> GaussianMixture:
    """The 1-D mixture of (X - E X) / sd(X): the law an auxiliary model learns from data
    standardized by its own (population) mean and sd, as in the authors' code."""
    w, m, v = law.weights, law.means[:, 0], law.covs[:, 0, 0]
    mean = float(w @ m)
    sd = math.sqrt(float(w @ (v + m**2)) - mean**2)
    return GaussianMixture(w, ((m - mean) / sd)[:, None], v / sd**2, covariance_type="spherical")


class Setting:
    """The laws of one setting in original units (``target``, ``aux``) and in the fusion frame:
    ``frame="common"``, x / FRAME_SCALE for everything; ``frame="own"``, each auxiliary
    standardized by its own mean and sd and the target samples by theirs (the authors' code)."""

    def __init__(self, name: str, frame: str = "common"):
        spec = SETTINGS[name]
        self.name, self.frame = name, frame
        self.aux = [_mix(a) for a in spec["aux"]]
        if frame == "common":
            self.aux_frame = [_mix(a, FRAME_SCALE) for a in spec["aux"]]
        elif frame == "own":
            self.aux_frame = [_standardized(a) for a in self.aux]
        else:
            raise ValueError(f"frame must be 'common' or 'own', got {frame!r}")
        if spec["target"] == "barycenter":
            self.lam_true = np.asarray(spec["lam"])
            self.target = fusion.barycenter(self.aux, self.lam_true)
        else:
            self.lam_true = None
            self.target = _mix(spec["target"])

    def target_samples(self, n: int, rng) -> np.ndarray:
        return np.asarray(self.target.sample(n, seed=rng), dtype=np.float64).reshape(n, 1)


def _reverse_em(field, n: int, steps: int, process, rng) -> np.ndarray:
    """n draws of the reverse-time Euler-Maruyama chain from N(0, v(T)) at T to T_EPS."""
    _, v_T = process.conditional_many(np.array([T]))
    x = rng.standard_normal((n, 1)) * math.sqrt(float(np.asarray(v_T).ravel()[0]))
    ts = np.linspace(T, T_EPS, steps + 1)
    return sample_euler_maruyama(field, x, ts, process, seed=rng, disable=True).x


def _w1_draws(samples: np.ndarray, setting: Setting, rng, n_draws: int, draw: int):
    """W1 of each of n_draws consecutive blocks of ``draw`` samples against fresh truth draws."""
    out = []
    for r in range(n_draws):
        block = samples[r * draw:(r + 1) * draw, 0]
        truth = setting.target_samples(draw, rng)[:, 0]
        out.append(wasserstein_distance(block, truth))
    return np.asarray(out)


def _mean_se(a) -> tuple[float, float]:
    a = np.asarray(a, dtype=np.float64)
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return float(a.mean()), se


def _float32_field(net):
    """The trained (float64) net evaluated in float32 for sampling: twice as fast on CPU, and its
    rounding (~1e-7 relative) is far below the W1 differences measured here (>= 1e-2)."""
    import copy

    import torch

    return copy.deepcopy(net).to(torch.float32).as_field()


def train_baseline(x: np.ndarray, process, *, steps: int, seed: int, device: str = "cpu"):
    """The from-scratch baseline: a time-conditioned ScoreMLP trained by DSM on the n samples,
    standardized by their own mean and sd. Returns (field in the standardized frame, mean, sd)."""
    from ...training import train_dsm

    mu, sd = float(x.mean()), float(x.std(ddof=1))
    z = (x - mu) / sd
    cfg = dict(hidden=(64, 64), activation="silu", n_frequencies=8)
    res = train_dsm(cfg, z, process, steps=steps, batch_size=min(256, max(16, z.shape[0])),
                    lr=3e-3, t_min=T_EPS, T=T, seed=seed, progress=False, cache=True,
                    device=device)
    return _float32_field(res.net), mu, sd


def train_auxiliary(law, process, *, steps: int, seed: int, n: int = 20000, device: str = "cpu"):
    """An auxiliary score network trained on n (plentiful) samples of ``law`` (fusion frame)."""
    from ...training import train_dsm

    data = np.asarray(law.sample(n, seed=seed), dtype=np.float64).reshape(n, 1)
    cfg = dict(hidden=(64, 64), activation="silu", n_frequencies=8)
    res = train_dsm(cfg, data, process, steps=steps, batch_size=512, lr=3e-3, t_min=T_EPS, T=T,
                    seed=seed, progress=False, cache=True, device=device)
    return _float32_field(res.net)


def measure_table1(setting_name: str, ns, *, train_steps: int, em_steps: int, n_draws: int,
                   draw: int, seed: int, networks: bool, aux_steps: int = 4000,
                   frames=("common", "own"), lambda_draws: int = 0,
                   progress: bool = False, device: str = "cpu") -> dict:
    """Baseline and ScoreFusion (exact auxiliaries; trained auxiliaries if ``networks``) per n:
    W1 (mean, se over n_draws draws of ``draw`` samples), fitted lambda, epsilon_0^2, seconds."""
    from tqdm.auto import tqdm

    from ...training.dsm import torch_threads

    process = VE(sigma=SIGMA)
    st = Setting(setting_name)
    frame_laws = {f: Setting(setting_name, f).aux_frame for f in frames}
    rng = np.random.default_rng([seed, 7, len(setting_name)])
    secs = {"training": 0.0, "fitting": 0.0, "sampling": 0.0}
    vf = fusion.vanilla_fusion(st.aux, st.target, seed=seed)
    eps0 = float(vf.problem.kl(vf.weights))
    eps0_own = None
    if "own" in frames and isinstance(st.target, GaussianMixture):
        vf_own = fusion.vanilla_fusion(frame_laws["own"], _standardized(st.target), seed=seed)
        eps0_own = {"epsilon0_sq": float(vf_own.problem.kl(vf_own.weights)),
                    "lambda": [float(w) for w in vf_own.weights]}
    aux_fields = {f"exact_{f}": (f, [a.path(process) for a in laws])
                  for f, laws in frame_laws.items()}
    if networks:
        t0 = time.perf_counter()
        for f, laws in [(f, frame_laws[f]) for f in frame_laws if f == "own"]:
            aux_fields[f"networks_{f}"] = (f, [train_auxiliary(a, process, steps=aux_steps,
                                                               seed=seed + i, device=device)
                                               for i, a in enumerate(laws)])
        secs["training"] += time.perf_counter() - t0
    rows, examples = [], {}
    total = draw * n_draws
    for n in tqdm(list(ns), desc=f"sf.table1 {setting_name}", disable=not progress, leave=False):
        x = st.target_samples(int(n), rng)
        row = {"setting": setting_name, "n": int(n)}
        t0 = time.perf_counter()
        base, mu, sd = train_baseline(x, process, steps=train_steps, seed=seed + int(n),
                                      device=device)
        secs["training"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch_threads(1):  # a small MLP on many points: one thread is fastest (measured)
            xb = mu + sd * _reverse_em(base, total, em_steps, process, rng)
        secs["sampling"] += time.perf_counter() - t0
        row["baseline_w1"] = _mean_se(_w1_draws(xb, st, rng, n_draws, draw))
        examples[int(n)] = {"baseline": xb[:draw, 0].copy()}
        for kind, (frame, fields) in aux_fields.items():
            shift, scale = (0.0, FRAME_SCALE) if frame == "common" else (mu, sd)
            t0 = time.perf_counter()
            fit = fusion.score_fusion(fields, (x - shift) / scale, process, T_TILDE, T=T,
                                      method="exact", seed=int(rng.integers(2**31)))
            secs["fitting"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            xf = shift + scale * _reverse_em(fit.field(), total, em_steps, process, rng)
            secs["sampling"] += time.perf_counter() - t0
            row[f"fusion_{kind}_w1"] = _mean_se(_w1_draws(xf, st, rng, n_draws, draw))
            examples[int(n)][f"ScoreFusion {kind}"] = xf[:draw, 0].copy()
            row[f"fusion_{kind}_lambda"] = [round(float(w), 4) for w in fit.weights]
        if lambda_draws:
            t0 = time.perf_counter()
            fields = aux_fields["exact_own"][1] if "exact_own" in aux_fields else None
            lams = []
            for _ in range(lambda_draws if fields is not None else 0):
                xr = st.target_samples(int(n), rng)
                zr = (xr - xr.mean()) / xr.std(ddof=1)
                lams.append(fusion.score_fusion(fields, zr, process, T_TILDE, T=T, method="exact",
                                                seed=int(rng.integers(2**31))).weights)
            secs["fitting"] += time.perf_counter() - t0
            if lams:
                lams = np.asarray(lams)
                row["own_lambda_over_data_draws"] = {
                    "mean": lams.mean(0).round(4).tolist(), "sd": lams.std(0, ddof=1).round(4).tolist(),
                    "min": lams.min(0).round(4).tolist(), "max": lams.max(0).round(4).tolist(),
                    "draws": len(lams)}
        rows.append(row)
        if progress:
            print(f"  n={n}: " + ", ".join(f"{k} {v[0]:.3f}" for k, v in row.items()
                                           if k.endswith("_w1")), flush=True)
    return {"setting": setting_name, "rows": rows, "epsilon0_sq": eps0, "epsilon0_own": eps0_own,
            "vanilla_lambda": [float(w) for w in vf.weights],
            "lam_true": None if st.lam_true is None else [float(w) for w in st.lam_true],
            "seconds": secs, "examples": examples, "target_law": st.target}


FAR_RATIO = 2.0  # "far below": the paper's baseline/ScoreFusion ratios at n <= 2^7 are 26 to 274
Z_SIG = 3.0


def table1_verdict(m: dict, *, small_n=(32, 64, 128), large_n=1024,
                   key: str = "fusion_exact_own_w1") -> Verdict:
    """Two parts, each against the sample-draw standard errors (the paper's error bars):

    (a) at every small n ScoreFusion's W1 is below the baseline's by more than Z_SIG combined
        standard errors *and* by a factor >= FAR_RATIO ("far below");
    (b) at n = large_n the baseline has caught up: its W1 is not above ScoreFusion's by more than
        Z_SIG combined standard errors.

    Both: reproduced. ScoreFusion significantly better at every small n but (a)'s factor or (b)
    failing: corrected (the ordering holds, the size or the crossover does not; the reason gives
    the measured numbers). ScoreFusion not significantly better at some small n: refuted.
    Non-finite W1: refuted."""
    rows = {r["n"]: r for r in m["rows"]}
    z, ratio = {}, {}
    for n, r in rows.items():
        (b, bse), (f, fse) = r["baseline_w1"], r[key]
        z[n] = (b - f) / math.hypot(bse, fse) if (bse > 0 or fse > 0) else float("nan")
        ratio[n] = b / f if f > 0 else float("nan")
    vals = [v for r in rows.values() for v in (*r["baseline_w1"], *r[key])]
    smalls = [n for n in small_n if n in rows]
    big = max(rows) if rows else None
    measured = {"advantage_z_by_n": {str(n): float(v) for n, v in sorted(z.items())},
                "baseline_over_fusion_w1_by_n": {str(n): float(v) for n, v in sorted(ratio.items())},
                "small_n": smalls, "largest_n": big}
    if not rows or not smalls or not all(np.isfinite(vals)) or not all(
            np.isfinite([z[n] for n in rows])):
        return Verdict("refuted", "a measured W1 or its standard error is not finite, or no small n "
                       "was measured", measured)
    ordered = all(z[n] > Z_SIG for n in smalls)
    far = all(ratio[n] >= FAR_RATIO for n in smalls)
    caught_up = big >= large_n and z[big] <= Z_SIG
    nums = ", ".join(f"n={n}: {rows[n]['baseline_w1'][0]:.3g} vs {rows[n][key][0]:.3g}"
                     for n in sorted(rows))
    if ordered and far and caught_up:
        return Verdict("reproduced", f"ScoreFusion far below the baseline at n = {smalls} and the "
                       f"baseline caught up at n = {big} (baseline vs ScoreFusion W1: {nums})",
                       measured)
    if ordered:
        parts = []
        if not far:
            parts.append(f"ScoreFusion is better at small n but by a factor "
                         f"{min(ratio[n] for n in smalls):.2g}-{max(ratio[n] for n in smalls):.2g}"
                         f", not 'far' (>= {FAR_RATIO:g}; the paper's factors are 26-274)")
        if not caught_up:
            parts.append(f"the baseline has not caught up at n = {big} (z = {z[big]:.2f})")
        return Verdict("corrected", "; ".join(parts) + f" (baseline vs ScoreFusion W1: {nums})",
                       measured)
    return Verdict("refuted", f"ScoreFusion is not below the baseline by {Z_SIG:g} SE at every "
                   f"small n (z = {[round(z[n], 2) for n in smalls]}; baseline vs ScoreFusion W1: "
                   f"{nums})", measured)


def _draw_table1(path, results):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, m in zip(axes[0], results):
        ns = [r["n"] for r in m["rows"]]
        for key in [k for k in m["rows"][0] if k.endswith("_w1")]:
            label = key[:-3].replace("_", " ").replace("own", "(own frames)").replace(
                "common", "(common frame)")
            mean = [r[key][0] for r in m["rows"]]
            se = [r[key][1] for r in m["rows"]]
            ax.errorbar(ns, mean, yerr=se, marker="o", capsize=3, label=label)
        if m["setting"] == "notebook":
            pn = [n for n in PAPER_TABLE4]
            ax.plot(pn, [PAPER_TABLE4[n][0] for n in pn], "k:", label="paper baseline")
            ax.plot(pn, [PAPER_TABLE4[n][2] for n in pn], "k--", label="paper ScoreFusion")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("n target samples")
        ax.set_ylabel("W1 to the ground truth")
        ax.set_title(f"{m['setting']} (eps0^2 = {m['epsilon0_sq']:.3g})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_histograms(path, m):
    """[SF] Fig. 2 / 4-6: histograms of the baseline's and ScoreFusion's samples per n, with the
    ground-truth density."""
    import matplotlib.pyplot as plt

    ns = sorted(m["examples"])
    fig, axes = plt.subplots(1, len(ns), figsize=(4 * len(ns), 3.2), squeeze=False)
    grid = np.linspace(-14, 14, 600)[:, None]
    law = m["target_law"]
    dens = np.exp(getattr(law, "normalized_logpdf", law.logpdf)(grid))
    for ax, n in zip(axes[0], ns):
        for name, xs in m["examples"][n].items():
            ax.hist(np.clip(xs, -14, 14), bins=120, range=(-14, 14), density=True, alpha=0.45,
                    label=name)
        ax.plot(grid[:, 0], dens, "k", lw=1, label="ground truth")
        ax.set_title(f"{m['setting']}, n = {n}")
        ax.set_xlabel("x")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@claim("sf.table1", title="1-D bimodal mixture: ScoreFusion far below a from-scratch baseline in "
                          "W1 at small n; the baseline catches up near n = 2^10",
       source="[SF] Sec. 5.1, Tables 1 and 4, Figs. 2, 4-6, App. D")
def check_table1(ctx: Context) -> Record:
    """The notebook setting (reproduction) decides the verdict; the three-auxiliary setting and a
    target inside the auxiliaries' KL hull are run beside it in --full."""
    quick = ctx.quick
    ns = (32, 1024) if quick else (32, 64, 128, 256, 512, 1024)
    kw = dict(train_steps=ctx.size(600, 4000), em_steps=ctx.size(100, 300),
              n_draws=ctx.size(2, N_DRAWS), draw=ctx.size(2048, DRAW), seed=ctx.seed,
              device=ctx.device)
    results = [measure_table1("notebook", ns, networks=not quick,
                              lambda_draws=ctx.size(2, 5), progress=not quick, **kw)]
    if not quick:
        side = dict(kw, n_draws=4, draw=4096, em_steps=200)
        results += [measure_table1(s, (32, 128, 1024), networks=False, progress=True, **side)
                    for s in ("scripts", "hull")]
    v = table1_verdict(results[0], large_n=1024)
    ctx.figure("w1_vs_n", _draw_table1, results)
    ctx.figure("histograms", _draw_histograms, results[0])
    measured = dict(v.measured)
    for m in results:
        measured[m["setting"]] = {
            "epsilon0_sq_min_KL(nu||mu_lambda)": m["epsilon0_sq"],
            "epsilon0_sq_in_own_frames": (m["epsilon0_own"] if m["epsilon0_own"] is not None
                                          else not_run("the target is not a Gaussian mixture")),
            "vanilla_fusion_lambda": m["vanilla_lambda"],
            "true_lambda": (m["lam_true"] if m["lam_true"] is not None
                            else not_run("the target is not a barycenter of the auxiliaries")),
            "w1_mean_se_by_n": {str(r["n"]): {k: r[k] for k in r if k.endswith("_w1")}
                                for r in m["rows"]},
            "fitted_lambda_by_n": {str(r["n"]): {k: r[k] for k in r if k.endswith("_lambda")}
                                   for r in m["rows"]},
            "seconds": m["seconds"]}
    return ctx.verdict(
        v,
        compared=[("W1 of ScoreFusion (exact auxiliaries, T~ = 0.5) vs a from-scratch DSM "
                   "baseline, per n", "difference against 3 combined standard errors")],
        claimed={"table1": "ScoreFusion's W1 is far below the baseline's for n < 2^10; the "
                           "baseline is better at n = 2^10",
                 "table4": {str(n): {"baseline": v4[:2], "scorefusion": v4[2:4],
                                     "lambda": v4[4]} for n, v4 in PAPER_TABLE4.items()}},
        measured=measured,
        tolerance={"z": 3.0},
        inputs={"ns": list(ns), **kw, "T_tilde": T_TILDE, "process": f"VE(sigma={SIGMA})",
                "frame_scale": FRAME_SCALE, "quick_mode": quick,
                "reduced_in_quick": "n in {32, 1024}; 600 training steps; 100 EM steps; 2 draws "
                                    "of 2048; lambda over 2 extra data draws; no trained "
                                    "auxiliaries; notebook setting only"},
        notes="Baseline: ScoreMLP (64, 64, SiLU, 8 frequencies) trained by DSM on the n samples "
              "standardized by their own mean and sd, not the authors' 344k-parameter UNet. "
              "ScoreFusion fits lambda by the exact simplex QP of the DSM regression (10).")
