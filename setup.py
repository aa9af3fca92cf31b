"""Build hook: the wheel carries the board files of the top-level `targets/` folder as package data.

`targets/*.toml` stays where the project layout puts it (one file per board, at the top of the checkout);
building a wheel copies those files to `edgemb/targets_data/` inside the package, where edgemb.targets looks
first. Everything else is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithTargets(build_py):
    """build_py plus a copy of targets/*.toml into the built package."""

    def run(self) -> None:
        super().run()
        source = HERE / "targets"
        boards = sorted(source.glob("*.toml"))
        if not boards:
            raise SystemExit(f"no board files in {source}: the wheel would have no targets")
        dest = Path(self.build_lib) / "edgemb" / "targets_data"
        dest.mkdir(parents=True, exist_ok=True)
        for path in boards:
            shutil.copy2(path, dest / path.name)


setup(cmdclass={"build_py": BuildWithTargets})
