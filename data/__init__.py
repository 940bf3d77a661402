"""Bundled labelled datasets, one directory each; installed as the package ``t1046lab._data``."""
