"""The README's and docs/getting-started.md's examples run as written (they document the public
contracts)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    namespace["test_my_sampler_uses_exact_scores"]()  # the hypothesis example, run as a test


def test_getting_started_examples_run():
    """docs/getting-started.md's examples run as written, in order (one namespace)."""
    pytest.importorskip("torch")
    doc = README.parent / "docs" / "getting-started.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(doc), "exec"), namespace)  # noqa: S102 - our own docs
    namespace["test_fokker_planck"]()  # the hypothesis example, run as a test
    assert namespace["res"].x.dtype.is_floating_point and namespace["fused"].differentiable
