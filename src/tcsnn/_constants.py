"""Named numerical constants of the neuron model."""

#: What a silent neuron outputs (z = e^t with t = +inf); an input equal to it never spikes.
NO_SPIKE: float = float("inf")

#: Firing threshold of the non-leaky integrate-and-fire neuron (paper eq. 1, tau = 1).
THRESHOLD: float = 1.0

#: The bias is the weight of an extra input that spikes at t = 0, i.e. z = e^0 = 1.
BIAS_Z: float = 1.0

#: Energy of one spike on neuromorphic hardware as the paper counts it (10 pJ per spike).
ENERGY_PER_SPIKE_J: float = 10e-12
