"""``core.kernels.*``: the numba kernels against the numpy reference formula and torch."""
from __future__ import annotations

import numpy as np

from ... import testing as sft
from ...testing import tolerances as tol
from ..record import Context, Record
from ..registry import claim
from ..verdicts import is_not_run, not_run, within
from ._common import Measured, eval_points, processes


def measure_parity(densities, rng, *, n_points: int = 64, cuda: bool = False) -> Measured:
    """Max relative difference |a - b| / max(|b|, 1) of (logpdf, score) between the numba
    kernel, the numpy reference and torch (CPU float64; and CUDA float64 when ``cuda``), for each
    (name, density). A NaN or infinite value on any route is NaN here (a failure)."""
    out = Measured()
    torch_missing = None
    for name, pt in densities:
        x = eval_points(pt, rng, n_points)
        res = sft.measure_backend_parity(pt, x)
        out.add("numba_vs_numpy", res["numba_vs_numpy"] / tol.KERNEL_PARITY.rtol, name)
        if is_not_run(res["torch_vs_numpy"]):
            torch_missing = res["torch_vs_numpy"]
        else:
            out.add("torch_vs_numpy", res["torch_vs_numpy"] / tol.KERNEL_PARITY.rtol, name)
        out.rows.append({"model": name, **res})
    out.numbers["max_rel_diff_numba_vs_numpy"] = out.excess["numba_vs_numpy"].value * tol.KERNEL_PARITY.rtol
    out.numbers["max_rel_diff_torch_vs_numpy"] = (
        torch_missing if torch_missing else out.excess["torch_vs_numpy"].value * tol.KERNEL_PARITY.rtol)
    if cuda:
        import torch

        name, pt = densities[0]
        x = eval_points(pt, rng, 4096)
        lp_c, s_c = pt.logpdf_and_score(torch.from_numpy(x).to("cuda"))
        lp_n, s_n = pt.logpdf_and_score(x, impl="numpy")
        r = sft.asserts._rel_pair(lp_c.cpu().numpy(), s_c.cpu().numpy(), lp_n, s_n)
        out.add("cuda_float64_vs_numpy", r / tol.KERNEL_PARITY.rtol, name)
        out.numbers["max_rel_diff_cuda_float64_vs_numpy"] = r
    else:
        out.numbers["max_rel_diff_cuda_float64_vs_numpy"] = not_run("needs --device cuda")
    return out


@claim("core.kernels.parity",
       title="numba kernel == numpy reference == torch (float64) on random models",
       source="[SF] Sec. 2 (mixture score); backend seam")
def check_parity(ctx: Context) -> Record:
    """Random mixtures (K = 1..8, d = 1..4, iso/diag/full covariances) diffused by every process
    to a random time in [1e-4, 3], evaluated by the numba kernel, the numpy reference formula and
    torch on CPU in float64 (and on CUDA with ``--device cuda``)."""
    from ...testing.random import random_mixture

    rng = ctx.rng()
    densities = []
    for i in range(ctx.size(30, 200)):
        d, k = int(rng.integers(1, 5)), int(rng.integers(1, 9))
        kind = ("iso", "diag", "full")[i % 3]
        proc = processes()[i % 6]
        t = float(np.exp(rng.uniform(np.log(1e-4), np.log(3.0))))
        densities.append((f"Mixture[K={k},{kind},d={d}], {proc!r}, t={t:.3g}",
                          random_mixture(rng, k, d, kind=kind).marginal(proc, t)))
    m = measure_parity(densities, rng, cuda=ctx.device == "cuda")
    compared = [("numba kernel logpdf_and_score(x, impl='numba')", "numpy reference (impl='numpy')")]
    if "torch_vs_numpy" in m.excess:
        compared.append(("torch CPU float64 logpdf_and_score", "numpy reference"))
    if "cuda_float64_vs_numpy" in m.excess:
        compared.append(("torch CUDA float64 logpdf_and_score", "numpy reference"))
    return ctx.verdict(
        within(m.excess),
        compared=compared,
        claimed={"max relative difference": f"<= {tol.KERNEL_PARITY.rtol:g}"},
        measured=m.numbers,
        tolerance=tol.KERNEL_PARITY.as_dict(), inputs={"n_models": len(densities), "device": ctx.device,
                                                      "seed": ctx.seed},
        rows=m.worst_rows("numba_vs_numpy", 10),
        notes="relative difference = |a - b| / max(|b|, 1); rows: the 10 worst (numba vs numpy)")
