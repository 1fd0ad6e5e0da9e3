"""The catalogue of checkable paper statements (``shared/CLAIMS.md``), shipped with the package.

``catalogue.json`` is parsed from CLAIMS.md by :func:`parse_claims_md` (``sftheory docs
--claims-md PATH`` refreshes it); a test compares the two whenever CLAIMS.md is beside the repo.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")

PAPERS = {
    "sf": ("ScoreFusion", "scorefusion-paper.md"),
    "os": ("ODE vs SDE", "ode-vs-sde-paper.md"),
    "sm": ("Score smoothing", "score-smoothing-paper.md"),
    "core": ("sftheory self-consistency", None),
}


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    statement: str
    how: str

    @property
    def paper(self) -> str:
        return self.id.split(".")[0]


def parse_claims_md(text: str) -> list[CatalogueEntry]:
    """Rows ``| id | statement | how |`` of CLAIMS.md; "a / b" ids become one entry each."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*([a-z]+\.[^|]+?)\s*\|(.*)\|(.*)\|\s*$", line)
        if not m or m.group(1).strip() in ("id",):
            continue
        for cid in m.group(1).split("/"):
            out.append(CatalogueEntry(cid.strip(), m.group(2).strip(), m.group(3).strip()))
    return out


def write_catalogue(entries: list[CatalogueEntry], path: Path = CATALOGUE_PATH) -> None:
    path.write_text(json.dumps([e.__dict__ for e in entries], indent=1) + "\n")


@lru_cache(maxsize=1)
def load_catalogue() -> tuple[CatalogueEntry, ...]:
    return tuple(CatalogueEntry(**d) for d in json.loads(CATALOGUE_PATH.read_text()))


def roadmap_item(claim_id: str) -> str:
    """Where ``shared/ROADMAP.md`` plans the check of a paper claim not implemented yet."""
    if claim_id.startswith("os."):
        return "ROADMAP 1 (generative processes with tunable h)"
    if claim_id.startswith("sm."):
        return "ROADMAP 2 (score smoothing)"
    if claim_id in ("sf.alg1", "sf.thm4", "sf.table1"):
        return "ROADMAP 4 (ScoreFusion Algorithm 1)"
    if claim_id in ("sf.table2", "sf.table3"):
        return "ROADMAP Later (digits experiment)"
    return "ROADMAP 3 (KL barycenters and vanilla fusion)"
