"""Private numba kernels. Called only through :mod:`sftheory.models` dispatch; each kernel is a
compiled realization of a formula whose single definition (and reference implementation) lives
in :mod:`sftheory.models._formulas`. Parity tests compare the two.

numba's on-disk cache (``cache=True``) is keyed on the source file of each compiled function
only, but the step loops in ``sampler.py`` inline functions of ``mixture.py`` and ``fastexp.py``:
after an edit (or a partial update) of one of those files the cached loops would silently run the
old math. So the cache files of this package are tied to a hash of all its sources and deleted
when that hash changes (:func:`_drop_stale_cache`, run once at import)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def _drop_stale_cache(here: Path | None = None) -> None:
    """Delete the numba cache files of the package in ``here`` when its sources changed."""
    here = Path(__file__).resolve().parent if here is None else Path(here)
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    stamp_value = digest.hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "kernels-source.sha256"
    try:
        if stamp.read_text() == stamp_value:
            return
    except OSError:
        pass
    try:  # a read-only install keeps numba's cache elsewhere; nothing to do here then
        cache.mkdir(exist_ok=True)
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        stamp.write_text(stamp_value)
    except OSError:
        pass


_drop_stale_cache()
