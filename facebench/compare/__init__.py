"""Reports of one protocol side by side, with paired bootstrap intervals of their differences.

The library behind ``facebench compare``: the first report is the reference; every other
report's headline numbers are differenced against it, and each difference gets a paired
percentile bootstrap interval computed from the reports' per-unit files (``x.scores.npz``,
written beside ``x.json`` by ``facebench verify --json``).

- :mod:`facebench.compare.reports`: :func:`compare_reports` (loading and checking the
  reports and their per-unit files, the headline numbers, the intervals, the refusals).
- :mod:`facebench.compare.resample`: the paired bootstrap schemes (strata, the order of the
  random draws, split layouts) and each report's numbers on the resamples.
- :mod:`facebench.metrics.bootstrap`: the metrics of weighted resamples (pure numpy), equal
  to the library functions on the repeated units; their cost.
- :mod:`facebench.compare.comparison`: the result types and the JSON document.
- :mod:`facebench.compare.render`: table cells, the legend, Markdown, writing the outputs.

Every public name of these modules is importable from here.
"""

from facebench.compare.comparison import (
    COMPARE_SCHEMA_VERSION,
    Comparison,
    Difference,
    Headline,
    Metric,
)
from facebench.compare.render import (
    NOISE_MARK,
    Cell,
    format_cells,
    legend,
    to_markdown,
    write_outputs,
)
from facebench.compare.reports import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    FOLD_UNITS,
    INTERVAL_RULE,
    PROBE_UNITS,
    PROBE_VALUES,
    SPLIT_UNITS,
    compare_reports,
)
from facebench.compare.resample import (
    CMC_RANKS,
    FOLD_SCHEME,
    RNG_RULE,
    SPLIT_SCHEME,
    SplitEngines,
    SplitLayout,
    bootstrap_folds,
    bootstrap_splits,
    draw_counts,
    fold_strata,
    split_engines,
    split_layouts,
    split_point,
)
from facebench.metrics.bootstrap import (
    FoldEngine,
    IdentificationEngine,
    Stats,
    VerificationEngine,
    cmc_key,
    tar_key,
    tpir_key,
)

__all__ = [
    "CMC_RANKS",
    "COMPARE_SCHEMA_VERSION",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "FOLD_SCHEME",
    "FOLD_UNITS",
    "INTERVAL_RULE",
    "NOISE_MARK",
    "PROBE_UNITS",
    "PROBE_VALUES",
    "RNG_RULE",
    "SPLIT_SCHEME",
    "SPLIT_UNITS",
    "Cell",
    "Comparison",
    "Difference",
    "FoldEngine",
    "Headline",
    "IdentificationEngine",
    "Metric",
    "SplitEngines",
    "SplitLayout",
    "Stats",
    "VerificationEngine",
    "bootstrap_folds",
    "bootstrap_splits",
    "cmc_key",
    "compare_reports",
    "draw_counts",
    "fold_strata",
    "format_cells",
    "legend",
    "split_engines",
    "split_layouts",
    "split_point",
    "tar_key",
    "to_markdown",
    "tpir_key",
    "write_outputs",
]
