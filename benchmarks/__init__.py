"""facebench's benchmarks (``make bench``): speed and memory, measured, never asserted.

Run ``python -m benchmarks`` from the repository root. Each benchmark times facebench's
engine against a baseline timed in the same run and reports ratios; absolute numbers depend
on the machine.

Modules
-------
kfold_bench
    LFW-style 10-fold accuracy: facebench's sorted-score engine against the threshold-grid
    scan of the common evaluation scripts, on 6,000 and 1,000,000 pairs.
extract_bench
    Extraction images/s against a bare ``model(batch)`` loop over pre-decoded tensors
    (iresnet-50 and the small CNN), with peak memory at N and 4N images.
ijbc_bench
    An IJB-C-sized 1:1 evaluation from a store, stage by stage, with peak memory and a
    brute-force check of TAR at FAR 1e-6 ... 1e-1.
"""

from facebench.cpu import before_numpy

# Every worker (facebench's side and the baselines') imports this package before numpy:
# both sides run with the numpy the facebench command line gets (facebench.cpu).
before_numpy()
