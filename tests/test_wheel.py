"""kjlab as a user gets it from a wheel: built from this checkout, installed (not
editable) into a fresh virtual environment, run from a directory outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAVED_RUN = Path(__file__).parent / "data" / "runs" / "i386-hibernate-pass"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("kjlab-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=300)
    subprocess.run([str(tmp / "venv/bin/pip"), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=900)
    return tmp / "venv/bin/kjlab"


def test_the_wheel_lists_what_it_carries(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run([str(installed), "list"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "i386-hibernate.toml" in out.stdout and "pc-virtio" in out.stdout and "hibernate" in out.stdout
    for line in out.stdout.splitlines():
        if line.strip().endswith("i386-hibernate.toml"):
            assert Path(line.strip()).is_file() and "site-packages" in line  # a path the user can pass
    lab_dir = subprocess.run([str(installed.parent / "python"), "-c", "import lab; print(lab.__file__)"],
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in lab_dir  # not the checkout: the installed copy


def test_the_wheel_renders_a_saved_run(installed: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / SAVED_RUN.name
    shutil.copytree(SAVED_RUN, run_dir)
    out = subprocess.run([str(installed), "report", str(run_dir)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    page = (run_dir / "report.html").read_text()
    assert "PASS" in page and "also identical at departure, in B, on the disk and at return" in page
    assert "every page of A&#39;s RAM from 0 to 120 MiB" in page
