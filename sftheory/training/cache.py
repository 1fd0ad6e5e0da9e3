"""A settings-keyed cache of trained networks.

Every setting that decides a training run (architecture, initial weights, data identity and seed,
process parameters, steps, batch size, learning rate and its schedule, weighting, time range,
optimizer, seed, device type, dtype, torch version) goes into one canonical JSON document; its
SHA-256 is the key. A run with the same settings loads the stored ``state_dict`` instead of
training again; any changed setting gives another key, hence a new run.

Where: ``$SFTHEORY_CACHE`` if set, else ``~/.cache/sftheory``; files are
``<dir>/dsm/<key>.pt`` (a ``torch.save`` of ``{"state_dict", "losses", "settings"}``), written to
a temporary file in the same directory and moved into place with :func:`os.replace`, so a reader
never sees a half-written file and concurrent writers of one key leave one complete file.
Delete the directory to clear the cache.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_ENV = "SFTHEORY_CACHE"
FORMAT_VERSION = 1


def cache_dir(cache=True) -> Path | None:
    """The cache directory for ``cache``: True -> ``$SFTHEORY_CACHE`` or ``~/.cache/sftheory``;
    a path (str or Path) -> that directory; False or None -> None (no caching)."""
    if cache is None or cache is False:
        return None
    if cache is True:
        env = os.environ.get(CACHE_ENV)
        return Path(env).expanduser() if env else Path.home() / ".cache" / "sftheory"
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser()
    raise ValueError(f"cache must be True, False, None or a directory path, got {cache!r}")


def _canonical(obj):
    """JSON-ready, deterministic form of settings (floats by repr, arrays as lists)."""
    if isinstance(obj, dict):
        return {str(k): _canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _canonical(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return repr(f) if not math.isfinite(f) else f
    if obj is None or isinstance(obj, str):
        return obj
    raise ValueError(f"setting {obj!r} of type {type(obj).__name__} cannot enter a cache key")


def settings_json(settings: dict) -> str:
    """The canonical JSON text of ``settings`` (sorted keys, no whitespace)."""
    return json.dumps(_canonical(settings), sort_keys=True, separators=(",", ":"))


def settings_key(settings: dict) -> str:
    """SHA-256 hex digest of :func:`settings_json` (with the cache format version)."""
    text = settings_json({"format": FORMAT_VERSION, "settings": settings})
    return hashlib.sha256(text.encode()).hexdigest()


def array_digest(a) -> str:
    """SHA-256 of an array's dtype, shape and bytes (data identity for a fixed data set)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode())
    h.update(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def state_digest(state_dict) -> str:
    """SHA-256 of a torch ``state_dict`` (names, dtypes, shapes, values): the initial weights."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def entry_path(directory: Path, key: str) -> Path:
    return Path(directory) / "dsm" / f"{key}.pt"


def load_entry(directory: Path, key: str, settings: dict, device):
    """The stored ``{"state_dict", "losses", "settings"}`` of ``key``, or None when absent,
    unreadable, or stored for other settings (a corrupt file or a digest collision retrains)."""
    import torch

    path = entry_path(directory, key)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable entry is a miss, and gets rewritten
        return None
    if not isinstance(payload, dict) or payload.get("settings") != settings_json(settings):
        return None
    return payload


def save_entry(directory: Path, key: str, settings: dict, state_dict, losses) -> Path:
    """Write the entry atomically (temporary file in the same directory, then ``os.replace``)."""
    import torch

    path = entry_path(directory, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
               "losses": torch.as_tensor(np.asarray(losses, dtype=np.float64)),
               "settings": settings_json(settings)}
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


__all__ = ["CACHE_ENV", "cache_dir", "settings_json", "settings_key", "array_digest",
           "state_digest", "entry_path", "load_entry", "save_entry"]
