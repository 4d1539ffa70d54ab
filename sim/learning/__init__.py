"""Learning kernels: data, learners, learning-curve theory (one concept per module).

* ``sim.learning.data``: the project's one data module (synthetic Gaussian spectra; real data shipped in
  packages: scikit-learn's digits, MNIST-1D).
* ``sim.learning.ridge``: ridge / minimum-norm least squares and whole learning curves over nested
  training sets (shared factorisations), the solver under every learner.
* ``sim.learning.linear``, ``sim.learning.features``, ``sim.learning.kernel``: linear regression on the
  inputs, on P random features, and kernel regression (plus the empirical kernel spectrum).
* ``sim.learning.theory``: the spectral (eigenlearning) learning curve, its exponents, double descent.

Submodules are imported explicitly (``from sim.learning import data``); importing this package reads no
file and imports no optional dependency.
"""
