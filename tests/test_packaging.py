"""Every package directory is listed in pyproject.toml, so a non-editable install ships it."""

import tomllib

from .helpers import REPO


def test_every_package_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    on_disk = set()
    for package, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            on_disk.add(".".join([package, *relative.parts]))
    assert set(config["packages"]) == on_disk
