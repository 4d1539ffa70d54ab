"""Closed-form theory that hdsim's measurements are checked against. Formulas and references are in
each module's docstrings; nothing here samples."""
