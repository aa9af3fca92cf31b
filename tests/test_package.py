"""edgemb as a package: a wheel built from the repo works outside the checkout, with its boards and `ref` weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "edgemb", "targets", "calibration")


def _copy_sources(dest: Path) -> Path:
    """The files a wheel is built from, copied so the build leaves nothing in the checkout."""
    dest.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def _fresh_venv(path: Path) -> Path:
    """A venv with no edgemb; the heavy dependencies come from this venv's site-packages through a .pth file.

    A path added by a .pth line is not itself a site folder, so this venv's own .pth files (among them the
    editable install's finder for the checkout) are never run there.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = Path(subprocess.run([str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path


@pytest.mark.slow
def test_wheel_installs_and_runs_targets_and_ref_outside_the_checkout(tmp_path):
    source = _copy_sources(tmp_path / "src")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("edgemb-*.whl"))

    venv = _fresh_venv(tmp_path / "venv")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, text=True,
                             timeout=600)
    assert install.returncode == 0, install.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEMB_TARGETS")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)

    where = run(str(venv / "bin" / "python"), "-c", "import edgemb, edgemb.targets as t; print(edgemb.__file__); "
                                                    "print(t.TARGETS_DIR)")
    module, targets_dir = where.stdout.split()
    assert module.startswith(str(venv)) and targets_dir.startswith(str(venv)), where.stdout + where.stderr

    targets = run(str(venv / "bin" / "edgemb"), "targets")
    assert targets.returncode == 0, targets.stderr
    listed = {line.split()[0] for line in targets.stdout.splitlines()[1:]}
    assert listed == {p.stem for p in (REPO / "targets").glob("*.toml")}

    models = run(str(venv / "bin" / "edgemb"), "models", "--json")
    assert models.returncode == 0 and '"v2_1.0"' in models.stdout, models.stderr

    evaluated = run(str(venv / "bin" / "edgemb"), "eval", "v1_0.25", "--weights", "ref", "--data",
                    "fashion-mnist:test:200")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "v1_0.25" in evaluated.stdout and "top-1" in evaluated.stdout and "(n=200)" in evaluated.stdout
