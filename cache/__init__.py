"""The HDF5 feature cache: its layout (written by extract/), the reader for training, `spp-scl inspect`."""
