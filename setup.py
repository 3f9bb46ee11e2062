"""Packaging beyond pyproject.toml: ship the repository's top-level ``golden/`` inside the wheel.

The golden tensors stay at the top of the repository (docs/golden-format.md); the build maps that
directory onto the package ``refmem._golden`` so that an installed refmem finds them
(:func:`refmem.golden.storage.default_dir`). Every other package is found as
``refmem`` and ``refmem.*``, so a new family package needs no change here.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["refmem", "refmem.*"]) + ["refmem._golden"],
    package_dir={"refmem._golden": "golden"},
    package_data={"refmem._golden": ["manifest.json", "README.md", "*/*/*.safetensors"]},
    include_package_data=False,
)
