"""Packaging beyond what pyproject.toml can say: ship the repository's data/ as t1046lab._data.

The bundled datasets live at the top level (``data/<name>/``) so they are easy to find in
the repository; installed, they become the package ``t1046lab._data``, which
:func:`t1046lab.datasets.registry.data_dir` finds. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["t1046lab", "t1046lab.*"]), "t1046lab._data"],
    package_dir={"t1046lab._data": "data"},
    package_data={
        "t1046lab": ["py.typed"],
        "t1046lab._data": ["*.md", "*/*", "*/*/*", "*/*/*/*"],
    },
    exclude_package_data={"t1046lab._data": ["*/__pycache__/*", "*/*.pyc"]},
)
