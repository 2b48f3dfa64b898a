"""facebench's benchmarks (``make bench``): speed and memory, measured, never asserted.

Run ``python -m benchmarks`` from the repository root. Each benchmark times facebench's
engine against a baseline timed in the same run and reports ratios; absolute numbers depend
on the machine.

Modules
-------
kfold_bench
    LFW-style 10-fold accuracy: facebench's sorted-score engine against the threshold-grid
    scan of the common evaluation scripts, on 6,000 and 1,000,000 pairs.
"""
