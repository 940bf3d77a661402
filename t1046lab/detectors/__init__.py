"""Detectors: one module per detector family, one alerts frame for all."""
