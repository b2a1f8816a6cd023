"""erpath collector: ingest, path state, flips, asymmetry, metrics and alerts."""
