"""Notebooks (issue 10, item 10): `import sweep.plot` leaves matplotlib's backend alone, the README's
notebook recipe runs as written, and `sweep plot` takes size, dpi and style options."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from record_factory import realistic_sweep

from sweep.cli import main

REPO = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(extra)
    return env


@pytest.mark.parametrize("backend", ["template", "svg"])
def test_import_sweep_plot_keeps_the_chosen_backend(backend: str) -> None:
    """As Jupyter chooses its inline backend (MPLBACKEND=module://matplotlib_inline...), any choice stays."""
    code = "import sweep.plot, matplotlib; print(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=_env(MPLBACKEND=backend))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == backend


def test_import_sweep_plot_does_not_resolve_the_backend() -> None:
    """Without MPLBACKEND, importing sweep.plot leaves the backend to be resolved later (not forced to Agg)."""
    code = ("import matplotlib, sweep.plot\n"
            "from matplotlib import rcsetup\n"
            "print(dict.__getitem__(matplotlib.rcParams, 'backend') is rcsetup._auto_backend_sentinel)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def readme_recipe() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### Notebook recipe", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_notebook_recipe_runs(tmp_path: Path) -> None:
    recipe = readme_recipe()
    assert 'sweep_dir = "results/demo"' in recipe
    realistic_sweep(tmp_path / "results" / "demo", lr_exponents=range(0, 5), warmup_exponents=(0, 2, 4), steps=60)
    out = subprocess.run([sys.executable, "-c", recipe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env=_env(MPLBACKEND="Agg"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best_test_acc" in out.stdout
    assert Image.open(tmp_path / "sp_sharpness.png").size == (1000, 600)  # 5x3 in at dpi 200


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nb") / "toy"
    realistic_sweep(d, lr_exponents=range(0, 4), warmup_exponents=(0, 4), steps=40)
    return d


def test_plot_size_dpi_style_options(toy: Path) -> None:
    import matplotlib

    assert main(["plot", str(toy), "--kind", "heatmap", "--format", "png", "--width", "6", "--height", "3",
                 "--dpi", "100", "--style", "whitegrid", "--context", "talk"]) == 0
    assert matplotlib.get_backend().lower() == "agg"  # the CLI (only) selects Agg
    figures = toy / "figures"
    assert Image.open(figures / "heatmap_best_test_acc.png").size == (600, 300)
    command = json.loads((figures / "heatmap_best_test_acc.json").read_text())["command"]
    assert command.endswith("--width 6 --height 3 --dpi 100 --style whitegrid --context talk")

    assert main(["plot", str(toy), "--kind", "heatmap", "--format", "png"]) == 0  # defaults: 150 dpi
    w0, h0 = Image.open(figures / "heatmap_best_test_acc.png").size
    assert main(["plot", str(toy), "--kind", "heatmap", "--format", "png", "--width", "12", "--dpi", "50",
                 "--style", "ggplot"]) == 0  # width alone keeps the aspect ratio; a matplotlib style sheet
    w, h = Image.open(figures / "heatmap_best_test_acc.png").size
    assert w == 600 and abs(h / w - h0 / w0) < 0.01


@pytest.mark.parametrize("argv, message", [
    (["--style", "nope"], "--style nope: not a seaborn style"),
    (["--width", "-2"], "--width -2: expected a positive number"),
    (["--dpi", "0"], "--dpi 0: expected a positive number"),
])
def test_bad_style_options_are_one_line(toy: Path, capsys, argv: list[str], message: str) -> None:
    assert main(["plot", str(toy), "--kind", "heatmap", "--format", "png", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_figures_hands_style_options_to_sweep_plot(tmp_path: Path, capsys) -> None:
    assert main(["figures", "fig1", f"results_dir={tmp_path}", "--dry-run", "--format", "png", "--width", "7",
                 "--dpi", "300", "--context", "paper"]) == 0
    draws = [line for line in capsys.readouterr().out.splitlines() if "would draw: sweep plot" in line]
    assert draws and all(line.endswith("--width 7 --dpi 300 --context paper") for line in draws)
