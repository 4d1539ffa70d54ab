"""Learning kernels: data, learners, learning-curve theory (one concept per module).

* ``sim.learning.data``: the project's one data module (synthetic Gaussian spectra; real data shipped in
  packages: scikit-learn's digits, MNIST-1D).

Submodules are imported explicitly (``from sim.learning import data``); importing this package reads no
file and imports no optional dependency.
"""
