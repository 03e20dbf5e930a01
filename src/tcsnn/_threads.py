"""How many threads the CPU kernels use.

Results do not depend on the thread count once the kernels reduce in a fixed order; the count only changes the
speed.  On a busy machine fewer threads are often faster: a worker thread that waits for a core held by another
process makes every parallel step as slow as the slowest thread.
"""

from __future__ import annotations


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the numba kernels and in PyTorch's intra-op pool (``n >= 1``).

    numba cannot start more threads than it was launched with (``NUMBA_NUM_THREADS``, default: all cores);
    a larger ``n`` is capped there.  torch and numba are imported here, not at ``import tcsnn``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be an int >= 1, got {n!r}")
    import torch

    from tcsnn._numba_setup import import_numba

    numba = import_numba()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)
