"""Privacy stage: accounting, noise calibration and allocation, Poisson sampling, the ledger.

Everything that the (ε, δ) guarantee rests on, apart from the per-example gradient bounds
computed in `lipc.check`, lives in this package.
"""
