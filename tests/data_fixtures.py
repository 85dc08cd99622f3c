"""Fixtures that build tiny data sets in the real formats (filled in by the data-registry work)."""
