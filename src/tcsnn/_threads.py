"""How many threads the CPU kernels use: a fair share of a busy machine by default, or what the user sets.

Default (chosen on the first kernel call, unless :func:`set_num_threads` or ``TCSNN_NUM_THREADS`` chose first):
``max(1, min(cores, round(cores - load)))`` with ``cores`` the CPUs this process may run on
(``os.sched_getaffinity``) and ``load`` the 1-minute load average.  On an idle machine that is every core; when
other processes keep the cores busy it drops towards one thread, because worker threads that wait for a core
held by another process make every parallel step as slow as the slowest thread (a 6-second run took 45-91 s
with all threads at load 4-10 on 2 cores, 8-9 s with one).  Results do not depend on the thread count.
"""

from __future__ import annotations

import os

_state = {"chosen": False}


def available_cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_num_threads() -> int:
    """A fair share of the machine: every core when idle, fewer as the 1-minute load average rises."""
    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(cores, round(cores - load)))


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the numba kernels and in PyTorch's intra-op pool (``n >= 1``).

    numba cannot start more threads than it was launched with (``NUMBA_NUM_THREADS``, default: all cores);
    a larger ``n`` is capped there.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be an int >= 1, got {n!r}")
    import torch

    from tcsnn._numba_setup import import_numba

    numba = import_numba()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(n)
    _state["chosen"] = True


def apply_default() -> None:
    """On the first kernel call: ``TCSNN_NUM_THREADS`` if set, else :func:`default_num_threads` (numba only)."""
    if _state["chosen"]:
        return
    _state["chosen"] = True
    from tcsnn._numba_setup import import_numba

    numba = import_numba()
    env = os.environ.get("TCSNN_NUM_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TCSNN_NUM_THREADS must be an int >= 1, got {env!r}")
        n = int(env)
    else:
        n = default_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
