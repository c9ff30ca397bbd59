"""`sweep figures`: every registered figure composes with the paper's settings and grid sizes; dry runs
train nothing; a tiny figure end to end writes PNGs and sidecars through `sweep plot`."""
import json

import pytest

from sweep.cli import main
from sweep.figures import FIGURES
from sweep.grid import compose, split_overrides

# experiment -> (cells of its grid, settings the paper fixes)
EXPECTED = {
    "fig1_mup": (4, {"param.name": "mup", "lr": 1.0, "batch_size": 0, "data.subset": 5000, "model.width": 512}),
    "fig1_sp": (4, {"param.name": "sp", "lr": 32.0, "batch_size": 0, "loss": "mse", "model.depth": 4}),
    "fig3_sp": (4 * 7 * 2, {"model.name": "wrn", "model.widen": 4, "steps": 100000, "batch_size": 128,
                            "data.augment.crop": 4, "extend.until_divergence": True}),
    "fig3_mup": (4 * 7, {"param.name": "mup", "loss": "xent", "data.augment.mixup": 1.0}),
    "fig4": (8 * 7 * 2, {"model.norm": "pre_ln", "data.name": "wikitext2", "decay": "cosine", "steps": 10000}),
    "fig5": (4 * 7, {"lr_init_mode": "eta_c", "eta_c.initial_guess": None, "eta_c.delta": 0.1, "steps": 10000,
                     "loss": "xent", "param.name": "sp"}),
    "gilmer2": (7 * 2 * 2, {"data.name": "digits", "param.name": "sp"}),
    "demo": (7 * 4 * 2, {"data.name": "digits"}),
}
TINY = ["data=synthetic", "model.width=8", "model.depth=2", "steps=4", "lr=1", "warmup=1,2", "param.name=sp",
        "probe.every=2", "probe.batch_size=32", "probe.dense_steps=0"]


def _select(cfg, dotted):
    value = cfg
    for part in dotted.split("."):
        value = value[part]
    return getattr(value, "value", value)


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_experiments_compose_with_paper_settings_and_grid_sizes(experiment):
    base = compose([f"experiment={experiment}"])
    cells = split_overrides([f"{k}={v}" for k, v in base.grid.items()])
    size, settings = EXPECTED[experiment]
    assert len(cells) == size
    for key, value in settings.items():
        assert _select(base, key) == value, key
    for cell in (cells[0], cells[-1]):  # the grid's corners are valid configs
        compose([f"experiment={experiment}", *cell])


def test_every_figure_is_covered():
    assert {e for f in FIGURES.values() for e in f.experiments} == set(EXPECTED)
    assert {"fig1", "fig3", "fig4", "fig5", "gilmer2", "demo"} <= set(FIGURES)


def test_fig4_learning_rates_are_1e_minus_4_times_powers_of_root_two():
    cells = split_overrides([f"lr={compose(['experiment=fig4']).grid.lr}"])
    lrs = [float(c[0].split("=")[1]) for c in cells]
    assert lrs == pytest.approx([1e-4 * 2 ** (x / 2) for x in range(8)], rel=1e-12)


def test_dry_run_lists_both_experiments_and_trains_nothing(tmp_path, capsys):
    assert main(["figures", "--dry-run", "fig1", f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "[fig1_mup] sweep 'fig1': 4 runs" in out and "[fig1_sp] sweep 'fig1': 4 runs" in out
    assert f"would draw: sweep plot {tmp_path}/fig1 --kind trajectories --facet param" in out
    assert not (tmp_path / "fig1").exists()


def test_unknown_figure_is_one_line(capsys):
    assert main(["figures", "fig99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown figure 'fig99'; available: fig1" in err


def test_submit_dry_run_names_the_submit_command(tmp_path, capsys):
    assert main(["figures", "--submit", "--dry-run", "demo", *TINY, f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "[demo] sweep submit experiment=demo data=synthetic" in out
    assert "would submit 2 runs" in out
    assert not (tmp_path / "demo" / "runs").exists()


def test_tiny_demo_figure_end_to_end(tmp_path, capsys):
    args = ["figures", "demo", *TINY, f"results_dir={tmp_path}", "--format", "png"]
    assert main(args) == 0
    figs = tmp_path / "demo" / "figures"
    for name in ("heatmap_best_test_acc", "trajectories"):
        assert (figs / f"{name}.png").stat().st_size > 1000
        meta = json.loads((figs / f"{name}.json").read_text())
        assert meta["command"].startswith(f"sweep plot {tmp_path}/demo --kind")
        assert meta["data"][0]["rows"] == 2  # the two warmups
    records = sorted((tmp_path / "demo" / "runs").glob("*/record.json"))
    mtimes = [r.stat().st_mtime_ns for r in records]
    (figs / "trajectories.png").unlink()
    assert main(["figures", "--plot-only", "demo", *TINY, f"results_dir={tmp_path}", "--format", "png"]) == 0
    assert (figs / "trajectories.png").exists()
    assert [r.stat().st_mtime_ns for r in records] == mtimes  # nothing retrained
