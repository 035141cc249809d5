"""What a finished run is shown as: the one-page report and the alignment diagnostics."""
