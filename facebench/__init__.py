"""facebench: an exact, fast face-verification evaluation toolkit.

Data flows one way: images -> extract -> feature store (HDF5) -> protocol (pairs/templates)
-> scores -> metrics -> report (JSON + table) -> plots / comparisons.
"""

__version__ = "0.1.0"
