"""docs/claims/*.md and docs/formulas.md are generated from the registry: they must not drift."""
from __future__ import annotations

from pathlib import Path

import pytest

from sftheory.claims.docs import PAGES

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("rel", sorted(PAGES))
def test_generated_page_is_current(rel):
    committed = (DOCS / rel).read_text()
    assert committed == PAGES[rel](), f"docs/{rel} is stale: run `sftheory docs`"


def test_every_catalogued_claim_has_a_row():
    from sftheory.claims.catalogue import load_catalogue

    text = "".join((DOCS / rel).read_text() for rel in PAGES if rel.startswith("claims/"))
    for e in load_catalogue():
        assert f"| `{e.id}` |" in text, e.id


@pytest.mark.parametrize("rel", sorted(r for r in PAGES if r.startswith("claims/")))
def test_claim_tables_keep_cells_with_bars_whole(rel):
    """Statements such as KL(.||p_i) are written with escaped bars: every row keeps 5 cells."""
    from sftheory.claims.catalogue import table_cells

    rows = [ln for ln in PAGES[rel]().splitlines() if ln.startswith("| `")]
    assert rows
    for ln in rows:
        assert len(table_cells(ln)) == 5, ln
