"""Task specifications, data sources and the TaskSequence DataModule."""
