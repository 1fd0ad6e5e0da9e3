"""Fusion of reference densities ([SF]): the distribution-level KL barycenter (Theorem 1),
Frank-Wolfe on the simplex (Alg. 2), vanilla fusion (problem (9), Remark 2, Prop. 1) and
ScoreFusion (Alg. 1, regression (10)). Barycenters, both fusion objectives and their Monte Carlo
sums run on numpy and on torch tensors (any device, float32/float64) through
:mod:`sftheory.backend`."""
from ._barycenter import KLBarycenter as KLBarycenter
from ._barycenter import barycenter as barycenter
from ._barycenter import gaussian_barycenter_params as gaussian_barycenter_params
from ._barycenter import gaussian_log_normalizer as gaussian_log_normalizer
from ._process import barycenter_sampler_terminal_law as barycenter_sampler_terminal_law
from ._frank_wolfe import FrankWolfeResult as FrankWolfeResult
from ._frank_wolfe import frank_wolfe as frank_wolfe
from ._frank_wolfe import paper_step as paper_step
from ._frank_wolfe import standard_step as standard_step
from ._vanilla import FusionObjective as FusionObjective
from ._vanilla import VanillaFusionResult as VanillaFusionResult
from ._vanilla import gaussian_log_ref_expectations as gaussian_log_ref_expectations
from ._vanilla import gaussian_log_ref_moments as gaussian_log_ref_moments
from ._vanilla import lse_moments_nx as lse_moments_nx
from ._vanilla import vanilla_fusion as vanilla_fusion
from ._score_fusion import FusionDraws as FusionDraws
from ._score_fusion import ScoreFusionResult as ScoreFusionResult
from ._score_fusion import SimplexQPResult as SimplexQPResult
from ._score_fusion import dsm_contributions as dsm_contributions
from ._score_fusion import dsm_loss as dsm_loss
from ._score_fusion import fusion_draws as fusion_draws
from ._score_fusion import score_fusion as score_fusion
from ._score_fusion import simplex_qp as simplex_qp

__all__ = ["barycenter", "KLBarycenter", "gaussian_barycenter_params", "gaussian_log_normalizer",
           "frank_wolfe", "FrankWolfeResult", "paper_step", "standard_step", "vanilla_fusion",
           "VanillaFusionResult", "FusionObjective", "gaussian_log_ref_moments",
           "gaussian_log_ref_expectations", "barycenter_sampler_terminal_law", "score_fusion",
           "ScoreFusionResult", "simplex_qp", "SimplexQPResult", "dsm_contributions",
           "dsm_loss", "lse_moments_nx", "fusion_draws", "FusionDraws"]
