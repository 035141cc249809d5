"""spp-scl: image-text sentiment analysis around SPP-SCL (AAAI 2026).

The library lives in four packages that data flows through in one direction:
`extract` (datasets, frozen encoders) -> `cache` (HDF5 layout, reader) -> `heads` (SPP-SCL and the compared
heads, their losses) -> `runs` (training, sweeps, tables, prediction, reports). This package holds what they
share (the version, the error kinds and their exit codes) and the `spp-scl` command line (`spp_scl.cli`).
"""

__version__ = "0.10.0"
