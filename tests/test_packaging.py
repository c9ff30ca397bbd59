"""The wheel carries every config: `pip install <wheel>` must work from any directory (issue 10, item 1).
The full install-and-run check (fresh venv, tiny sweep from a temporary folder) is in .ci/run."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_every_config(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy of what the wheel is built from: no build/ left in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("sweep", "hydra_plugins"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(tmp_path / "dist")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("warmup_sweep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    configs = {p.relative_to(REPO).as_posix() for p in (REPO / "sweep" / "conf").rglob("*.yaml")}
    assert len(configs) > 50
    for must in ("sweep/conf/config.yaml", "sweep/conf/experiment/demo.yaml",
                 "sweep/conf/experiment/family/fcn_trajectories.yaml", "sweep/conf/cluster/slurm.yaml"):
        assert must in configs
    assert configs <= names, sorted(configs - names)
    assert "hydra_plugins/sweep_grid_sweeper/sweep_grid_sweeper.py" in names
    assert "sweep/cli.py" in names and "sweep/commands/run.py" in names
    assert not any(n.startswith(("tests/", "conf/")) for n in names)


def test_conf_dir_is_inside_the_package() -> None:
    import sweep
    from sweep.grid import CONF_DIR

    assert CONF_DIR == Path(sweep.__file__).resolve().parent / "conf"
    assert (CONF_DIR / "config.yaml").is_file()
    assert (REPO / "conf").resolve() == CONF_DIR  # the repo's ./conf is a link to it
