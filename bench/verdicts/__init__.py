"""Verdicts: the regression gate, seed planning and the statistics both use."""
