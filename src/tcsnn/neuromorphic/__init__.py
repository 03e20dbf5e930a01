"""Neuromorphic tools: the exact event-driven simulator (:mod:`~tcsnn.neuromorphic.sim`), the phase-domain neuron
circuit (:mod:`~tcsnn.neuromorphic.circuit`) and the NIR export (:mod:`~tcsnn.neuromorphic.nir`).

Import the submodules; this package imports nothing itself (the command line reads their constants without torch).
"""
