"""Bundled datasets, the enterprise simulator and the scan lab."""
