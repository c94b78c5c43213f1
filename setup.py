"""Maps the gui/ folder to the import name convlab_gui (pyproject.toml alone cannot rename a package)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["convlab", "convlab.*"])
    + ["convlab_gui" + name[len("gui"):] for name in find_packages(include=["gui", "gui.*"])],
    package_dir={"convlab_gui": "gui"},
)
