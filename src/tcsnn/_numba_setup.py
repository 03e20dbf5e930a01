"""numba, with its on-disk cache of compiled kernels in a user cache folder, never inside the package."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

#: Where compiled kernels are cached (``NUMBA_CACHE_DIR`` wins when set).
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tcsnn" / "numba"


def import_numba() -> ModuleType:
    """Import numba and point its cache at :data:`DEFAULT_CACHE_DIR` unless the user chose one.

    numba reads ``NUMBA_CACHE_DIR`` once, on its first import; if numba was imported before tcsnn, setting
    ``numba.config.CACHE_DIR`` still applies to kernels decorated afterwards.
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", str(DEFAULT_CACHE_DIR))
    import numba

    if not numba.config.CACHE_DIR:
        numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    return numba
