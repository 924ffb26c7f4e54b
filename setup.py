"""Installs the card's top-level folders under one import namespace: ``voce.models``, ``voce.service``...

The folders stay where the product card puts them (``models/``, ``service/``, ``training/``, ``eval/``, plus the
``data/`` layer); only their installed names carry the ``voce.`` prefix, so installing Voce next to another project
that has a ``models`` or ``service`` package cannot clash.  Metadata lives in pyproject.toml.
"""
from setuptools import find_packages, setup

TOP = ("models", "service", "training", "eval", "data")

setup(
    package_dir={f"voce.{top}": top for top in TOP},
    packages=[f"voce.{top}" for top in TOP] + [f"voce.{top}.{sub}" for top in TOP for sub in find_packages(top)],
)
