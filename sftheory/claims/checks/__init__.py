"""Check modules, one per paper section (``core_processes``, ``core_models``, ``core_kernels``,
``sm_esf``, ...). :func:`sftheory.claims.registry.load_all` imports every public module here;
modules whose name starts with ``_`` hold shared helpers and register nothing."""
