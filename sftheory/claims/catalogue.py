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


_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_ID = re.compile(r"^[a-z]+\.[A-Za-z0-9_.]+$")


def table_cells(line: str) -> list[str] | None:
    """The cells of a GitHub table row ``| a | b \\| c |``: split at unescaped ``|``, each cell
    stripped and ``\\|`` unescaped to ``|``; None if the line is not a table row."""
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|") and len(line) > 1):
        return None
    parts = _CELL_SPLIT.split(line[1:-1])
    return [p.strip().replace("\\|", "|") for p in parts]


def parse_claims_md(text: str) -> list[CatalogueEntry]:
    """Rows ``| id | statement | how |`` of CLAIMS.md; "a / b" ids become one entry each.

    A ``|`` inside a cell is written ``\\|`` (GitHub table syntax) and comes back as ``|``.
    Rows whose first cell is not an id (the header, the ``---`` rule) are skipped; a row with an
    id and a number of cells other than three is an error (a mis-escaped ``|``).
    """
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        cells = table_cells(line)
        if not cells:
            continue
        ids = [c.strip() for c in cells[0].split("/")]
        if not all(_ID.match(i) for i in ids):
            continue
        if len(cells) != 3:
            raise ValueError(f"CLAIMS.md line {lineno}: expected 3 cells (id | statement | how), "
                             f"got {len(cells)}; is a '|' inside a cell not escaped as '\\|'?")
        for cid in ids:
            out.append(CatalogueEntry(cid, cells[1], cells[2]))
    return out


def write_catalogue(entries: list[CatalogueEntry], path: Path = CATALOGUE_PATH) -> None:
    path.write_text(json.dumps([e.__dict__ for e in entries], indent=1) + "\n")


@lru_cache(maxsize=1)
def load_catalogue() -> tuple[CatalogueEntry, ...]:
    return tuple(CatalogueEntry(**d) for d in json.loads(CATALOGUE_PATH.read_text()))


_ROADMAP_SF = {
    "sf.alg1": 4, "sf.thm4": 4, "sf.table1": 4, "sf.thm4.ttilde": 4, "sf.lemma2": 4,
    "sf.dimfree": 4,  # compares both fusion methods: needs Algorithm 1 (item 4) beside item 3
    "sf.table2": "Later", "sf.table3": "Later", "sf.tables.consistency": "Later",
}
_ROADMAP_TITLES = {1: "generative processes with tunable h", 2: "score smoothing",
                   3: "KL barycenters and vanilla fusion", 4: "ScoreFusion Algorithm 1",
                   "Later": "digits experiment"}
_NOT_CHECKABLE = {"os.table1": "CIFAR-10 FID needs a pretrained checkpoint and an Inception "
                               "network; recorded as not-checkable-here with the reason"}


def roadmap_item(claim_id: str) -> str:
    """Where ``shared/ROADMAP.md`` plans the check of a paper claim not implemented yet."""
    paper = claim_id.split(".")[0]
    if paper not in ("sf", "os", "sm"):
        raise ValueError(f"{claim_id!r} is not a paper claim id")
    if claim_id in _NOT_CHECKABLE:
        item = 1
        note = f"; {_NOT_CHECKABLE[claim_id]}"
    else:
        item = {"os": 1, "sm": 2}.get(paper) or _ROADMAP_SF.get(claim_id, 3)
        note = ""
    return f"ROADMAP {item} ({_ROADMAP_TITLES[item]}{note})"
