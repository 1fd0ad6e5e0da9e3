"""Citation keys and the index of which function implements which equation.

Every closed form in sftheory carries a ``Source:`` line in its docstring and is registered here
with :func:`source`, so that the docs and the claims registry read one index instead of parsing
docstrings.
"""
from __future__ import annotations

from dataclasses import dataclass

REFERENCES = {
    "SF": "Liu, Ding, Blanchet et al., 'ScoreFusion: Fusing Score-based Generative Models via "
    "Kullback-Leibler Barycenters' (papers/scorefusion-paper.md)",
    "OS": "Cao, Chen, Li, Zhou, 'Exploring the Optimal Choice for Generative Processes in "
    "Diffusion Models: Ordinary vs Stochastic Differential Equations' (papers/ode-vs-sde-paper.md)",
    "SM": "Chen, 'On the Interpolation Effect of Score Smoothing in Diffusion Models' "
    "(papers/score-smoothing-paper.md)",
    "SONG": "Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole, 'Score-Based Generative Modeling "
    "through Stochastic Differential Equations', ICLR 2021",
}


@dataclass(frozen=True)
class SourceEntry:
    qualname: str
    module: str
    paper: str
    where: str
    claims: tuple[str, ...]


SOURCE_INDEX: list[SourceEntry] = []


def source(paper: str, where: str, *claims: str):
    """Decorator: record that the decorated callable implements ``[paper] where``.

    ``claims`` are the ids (``CLAIMS.md`` or ``core.*``) whose checks exercise it.
    """
    if paper not in REFERENCES:
        raise ValueError(f"unknown citation key {paper!r}; known: {sorted(REFERENCES)}")

    def deco(obj):
        SOURCE_INDEX.append(
            SourceEntry(getattr(obj, "__qualname__", repr(obj)), getattr(obj, "__module__", "?"),
                        paper, where, tuple(claims))
        )
        return obj

    return deco
