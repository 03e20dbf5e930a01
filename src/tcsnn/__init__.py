"""tcsnn: temporal-coded (time-to-first-spike) deep spiking neural networks with exact spike times.

Values throughout are ``z = exp(t)`` of spike times ``t`` (Zhou et al., AAAI 2021, section 3).
A neuron that never fires outputs :data:`NO_SPIKE` (``+inf``), and an input equal to it never spikes.
"""

from tcsnn._constants import BIAS_Z, ENERGY_PER_SPIKE_J, NO_SPIKE, THRESHOLD
from tcsnn._threads import set_num_threads

__version__ = "0.1.0"

__all__ = ["NO_SPIKE", "THRESHOLD", "BIAS_Z", "ENERGY_PER_SPIKE_J", "__version__", "set_num_threads"]
