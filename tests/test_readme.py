"""The README's and docs/getting-started.md's examples run as written (they document the public
contracts)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
GETTING_STARTED = README.parent / "docs" / "getting-started.md"


def _run_examples(doc: Path, min_blocks: int) -> dict:
    """Execute the ```python blocks of ``doc`` in order, in one namespace; return it."""
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= min_blocks
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(doc), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_readme_examples_run():
    namespace = _run_examples(README, 3)
    namespace["test_my_sampler_uses_exact_scores"]()  # the hypothesis example, run as a test


def test_getting_started_examples_run():
    namespace = _run_examples(GETTING_STARTED, 4)
    namespace["test_fokker_planck"]()  # the hypothesis example, run as a test
    assert namespace["res"].x.dtype.is_floating_point and namespace["fused"].differentiable
