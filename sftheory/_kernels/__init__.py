"""Private numba kernels. Called only through :mod:`sftheory.models` dispatch; each kernel is a
compiled realization of a formula whose single definition (and reference implementation) lives
in :mod:`sftheory.models._formulas`. Parity tests compare the two."""
