"""The supporting papers' figures (sweep/plot_diagnostics.py, `sweep figures gilmer4 | gilmer16 |
jastrzebski4 | agarwala3`): each plot function on a small synthetic table draws the expected axes and
series and its `*_table` holds the numbers it shows; `sweep plot --kind ...` writes the files; the
figure entries compose valid configs at both scales (the probe-dependent ones once their switch is in
the schema) and their dry runs name the runs and the plot command."""
from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sweep import plot_diagnostics as diag  # noqa: E402
from sweep.cli import main  # noqa: E402
from sweep.config import ConfigError  # noqa: E402
from sweep.figures import FIGURES, SCALES, get_figure  # noqa: E402
from sweep.grid import compose, is_sweep, split_overrides  # noqa: E402
from record_factory import write_run  # noqa: E402

NEW = ("gilmer4", "gilmer16", "jastrzebski4", "agarwala3")
NPZ = ["data=npz", "data.path=/data/cifar10_subset.npz"]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _axes(fig, gid):
    return [ax for ax in fig.axes if ax.get_gid() == gid]


def _lines(ax, prefix):
    return {ln.get_gid(): ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith(prefix)}


# ----------------------------------------------------------------------------- synthetic tables
def _run_rows(run_id, steps, lr_t, target_lr, extra, **cols):
    df = pd.DataFrame({"step": steps, "lr": lr_t, **cols})
    for key, value in {"run_id": run_id, "target_lr": target_lr, "seed": 0, "lr_unit": "absolute",
                       "outcome": "converged", "param": "sp", "loss_fn": "mse", "optimizer": "sgd",
                       "model": "fcn", "data": "npz", **extra}.items():
        df[key] = value
    return df


def push_traces(warmups=(1, 16, 64), lr=1.0, lambda0=40.0, steps=128):
    """Sharpness that starts at lambda0 and, with warmup, follows 0.9 * 2/eta_t down once 2/eta_t falls
    below it (the 'pushing'); without warmup the run diverges at step 3."""
    frames = []
    t = np.arange(steps + 1)
    for w in warmups:
        lr_t = lr * np.minimum(1.0, (t + 1) / w)
        thr = 2.0 / lr_t
        sharp = np.minimum(lambda0, 0.9 * thr)
        outcome = "converged"
        if w == 1:
            sharp = np.full_like(thr, lambda0)
            sharp[4:] = np.nan
            outcome = "diverged"
        frames.append(_run_rows(f"w{w}", t, lr_t, lr, {"warmup": w, "batch_size": 512, "outcome": outcome},
                                sharpness=sharp, threshold=thr, loss=np.linspace(1, 0.1, len(t))))
    return pd.concat(frames, ignore_index=True)


def batch_traces(batches=(32, 128, 0), lr=0.5, steps=100, warmup=10):
    """Mid-training sharpness/threshold of 0.4, 0.7, 0.95 for growing batches (full batch last)."""
    frames = []
    t = np.arange(steps + 1)
    ratio = {32: 0.4, 128: 0.7, 0: 0.95}
    for b in batches:
        lr_t = lr * np.minimum(1.0, (t + 1) / warmup)
        thr = 2.0 / lr_t
        sharp = np.where(t > warmup, ratio[b] * thr, 0.5 * thr)
        frames.append(_run_rows(f"b{b}", t, lr_t, lr, {"warmup": warmup, "batch_size": b},
                                sharpness=sharp, threshold=thr, loss=np.linspace(1, 0.1, len(t))))
    return pd.concat(frames, ignore_index=True)


def grad_cov_traces(lrs=(0.01, 0.04, 0.16), batches=(16, 128, 512), steps=60):
    """lambda_1^K rises to a maximum 10 * sqrt(B/16) / (lr/0.01) at step 20, then decays (Conjecture 1)."""
    frames = []
    t = np.arange(steps + 1)
    for lr in lrs:
        for b in batches:
            peak = 10.0 * math.sqrt(b / 16) / (lr / 0.01)
            top = peak * np.exp(-((t - 20) / 15.0) ** 2) + 0.01
            probe = t % 5 == 0
            top = np.where(probe, top, np.nan)
            frames.append(_run_rows(f"lr{lr}-b{b}", t, np.full(len(t), lr), lr, {"warmup": 1, "batch_size": b},
                                    grad_cov_top=top, grad_cov_trace=3 * top, loss=np.linspace(2.3, 1, len(t)),
                                    sharpness=np.where(probe, 1.0, np.nan), threshold=np.full(len(t), 2 / lr)))
    return pd.concat(frames, ignore_index=True)


def ntk_traces(lrs=(0.01, 0.04, 0.16), batches=(8, 32), steps=80, ntk=100.0):
    frames = []
    t = np.arange(steps + 1)
    for lr in lrs:
        for b in batches:
            probe = t % 10 == 0
            trace = np.where(probe, ntk * (1 + t / steps), np.nan)
            loss = np.linspace(1, 0.2 + lr, len(t))
            frames.append(_run_rows(f"lr{lr}-b{b}", t, np.full(len(t), lr), lr, {"warmup": 1, "batch_size": b},
                                    ntk_trace=trace, loss=loss))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- Gilmer Figs. 4, 15
def test_warmup_push_draws_sharpness_threshold_and_ratio_per_warmup():
    traces = push_traces()
    fig = diag.warmup_push(traces, lr=1.0)
    (ax_s,), (ax_r,) = _axes(fig, "push:sharpness"), _axes(fig, "push:ratio")
    assert set(_lines(ax_s, "sharpness:")) == {"sharpness:1", "sharpness:16", "sharpness:64"}
    assert set(_lines(ax_s, "threshold:")) == {"threshold:1", "threshold:16", "threshold:64"}
    ratio = _lines(ax_r, "ratio:")["ratio:64"]
    x, y = ratio.get_data()
    assert x[-1] == pytest.approx(128 / 64)  # the x axis is t / T_wrm
    assert np.nanmax(y) <= 1.0 + 1e-9 and y[-1] == pytest.approx(0.9)
    diverged = _lines(ax_s, "sharpness:")["sharpness:1"].get_data()[0]
    assert diverged.max() == 3  # cut at the last finite probe
    assert ax_s.get_xscale() == "symlog" and ax_r.get_yscale() == "log"


def test_warmup_push_table_and_default_lr():
    traces = pd.concat([push_traces(lr=1.0), push_traces(lr=4.0).assign(
        run_id=lambda d: d["run_id"] + "-hi", outcome="diverged")], ignore_index=True)
    table = diag.warmup_push_table(traces)  # default lr: the largest where two warmups did not diverge
    assert list(table["warmup"]) == [1, 16, 64]
    row = table.set_index("warmup").loc[64]
    assert row["lambda0"] == pytest.approx(40.0)
    assert row["ratio_during_median"] == pytest.approx(0.9, abs=0.15)
    assert row["ratio_after_median"] == pytest.approx(0.9)
    assert table.set_index("warmup").loc[1, "outcome"] == "diverged"
    with pytest.raises(ConfigError, match="no runs at lr=3"):
        diag.warmup_push(traces, lr=3.0)


def test_warmup_push_without_sharpness_says_so():
    with pytest.raises(ConfigError, match="no sharpness"):
        diag.warmup_push(push_traces().drop(columns="sharpness"), lr=1.0)


# ----------------------------------------------------------------------------- Gilmer Fig. 16
def test_batch_sharpness_mid_training_ratio_grows_with_batch():
    traces = batch_traces()
    table = diag.batch_sharpness_table(traces)
    assert list(table["batch_size"]) == [32, 128, 0]  # full batch last
    assert table["mid_ratio"].tolist() == pytest.approx([0.4, 0.7, 0.95])
    fig = diag.batch_sharpness(traces)
    (ax_s,), (ax_b,) = _axes(fig, "batch:sharpness"), _axes(fig, "batch:mid_ratio")
    assert set(_lines(ax_s, "sharpness:")) == {"sharpness:B=32", "sharpness:B=128", "sharpness:full batch"}
    (line,) = _lines(ax_b, "mid_ratio:").values()
    x, y = line.get_data()
    assert list(x) == [32, 128, 512]  # full batch drawn at 4x the largest minibatch
    assert [t.get_text() for t in ax_b.get_xticklabels()] == ["32", "128", "full"]
    assert list(y) == pytest.approx([0.4, 0.7, 0.95])


# ----------------------------------------------------------------------------- Jastrzebski Fig. 4
def test_grad_cov_maximum_falls_with_lr_and_rises_with_batch():
    traces = grad_cov_traces()
    table = diag.grad_cov_table(traces)
    assert len(table) == 9 and (table["argmax_step"] == 20).all()
    at128 = table[table["batch_size"] == 128].sort_values("target_lr")["max_grad_cov_top"].to_numpy()
    assert (np.diff(at128) < 0).all()
    fig = diag.grad_cov(traces)
    for metric in ("grad_cov_top", "grad_cov_trace"):
        (ax_lr,) = _axes(fig, f"gradcov:{metric}:vs_step_lr")
        (ax_b,) = _axes(fig, f"gradcov:{metric}:vs_step_batch")
        (ax_mlr,) = _axes(fig, f"gradcov:{metric}:max_vs_lr")
        (ax_mb,) = _axes(fig, f"gradcov:{metric}:max_vs_batch")
        assert set(_lines(ax_lr, "lr:")) == {"lr:0.01", "lr:0.04", "lr:0.16"}
        assert set(_lines(ax_b, "batch:")) == {"batch:B=16", "batch:B=128", "batch:B=512"}
        assert set(_lines(ax_mlr, "max:")) == {"max:B=16", "max:B=128", "max:B=512"}
        x, y = _lines(ax_mb, "max:lr")["max:lr0.04"].get_data()
        assert list(x) == [16, 128, 512] and (np.diff(y) > 0).all()
    x, y = _lines(_axes(fig, "gradcov:grad_cov_top:max_vs_lr")[0], "max:")["max:B=128"].get_data()
    assert list(x) == pytest.approx([0.01, 0.04, 0.16]) and y == pytest.approx(at128)


def test_grad_cov_without_columns_names_the_switch():
    with pytest.raises(ConfigError, match="probe.grad_cov"):
        diag.grad_cov(push_traces())


# ----------------------------------------------------------------------------- Agarwala & Pennington
def test_noise_kernel_from_ntk_trace_and_threshold():
    traces = ntk_traces()
    k, source = diag.noise_kernel_norm(traces)
    row = traces[(traces["run_id"] == "lr0.04-b8") & (traces["step"] == 0)].index[0]
    assert k[row] == pytest.approx(0.04 * 100.0 / (2 * 8)) and "ntk_trace" in source
    table = diag.noise_kernel_table(traces)
    assert sorted(table["lr_over_batch"]) == pytest.approx(sorted(lr / b for lr in (0.01, 0.04, 0.16) for b in (8, 32)))
    fig = diag.noise_kernel(traces)
    (ax_t,), (ax_m,), (ax_l,) = (_axes(fig, g) for g in ("noise:vs_step", "noise:median_vs_lr_over_b",
                                                         "noise:loss_vs_median"))
    assert set(_lines(ax_t, "K:")) == {"K:0.01", "K:0.04", "K:0.16"}  # the smallest batch size
    assert any(ln.get_ydata()[0] == 1.0 and ln.get_linestyle() == "--" for ln in ax_t.get_lines())  # S-EOS
    assert set(_lines(ax_m, "median:")) == {"median:B8", "median:B32"}
    x, y = _lines(ax_m, "median:")["median:B8"].get_data()
    assert list(x) == pytest.approx([0.01 / 8, 0.04 / 8, 0.16 / 8])
    assert set(_lines(ax_l, "loss:")) == {"loss:B8", "loss:B32"}


def test_noise_kernel_prefers_a_recorded_column_and_full_batch_is_zero():
    traces = ntk_traces().assign(noise_kernel_norm=0.5)
    k, source = diag.noise_kernel_norm(traces)
    assert source == "noise_kernel_norm" and (k == 0.5).all()
    full = ntk_traces(batches=(0,))
    assert (diag.noise_kernel_norm(full)[0].fillna(0) == 0).all()
    with pytest.raises(ConfigError, match="only full-batch"):
        diag.noise_kernel(full)


# ----------------------------------------------------------------------------- sweep plot --kind
def _write_sweep(tmp_path, traces, name="s"):
    sweep = tmp_path / name
    for run_id, run in traces.groupby("run_id"):
        lr = float(run["target_lr"].iloc[0])
        cols = [c for c in ("step", "lr", "loss", "sharpness", "threshold", "grad_cov_top", "grad_cov_trace",
                            "ntk_trace") if c in run]
        write_run(sweep, run_id, lr=lr, warmup=int(run["warmup"].iloc[0]), outcome=run["outcome"].iloc[0],
                  trace=run[cols].reset_index(drop=True))
        record = sweep / "runs" / run_id / "record.json"
        data = json.loads(record.read_text())
        data["config"]["batch_size"] = int(run["batch_size"].iloc[0])
        data["grid"]["batch_size"] = int(run["batch_size"].iloc[0])
        record.write_text(json.dumps(data))
    return sweep


@pytest.mark.parametrize("kind,traces,expected", [
    ("warmup_push", push_traces, "warmup_push"),
    ("batch_sharpness", batch_traces, "batch_sharpness"),
    ("grad_cov", grad_cov_traces, "grad_cov"),
    ("noise_kernel", ntk_traces, "noise_kernel"),
])
def test_sweep_plot_kind_writes_the_figure(tmp_path, capsys, kind, traces, expected):
    sweep = _write_sweep(tmp_path, traces())
    assert main(["plot", str(sweep), "--kind", kind, "--facet", "", "--format", "png"]) == 0
    png = sweep / "figures" / f"{expected}.png"
    assert png.stat().st_size > 1000
    meta = json.loads((sweep / "figures" / f"{expected}.json").read_text())
    assert meta["command"].startswith(f"sweep plot {sweep} --kind {kind}")


def test_kind_all_adds_the_diagnostics_the_traces_support(tmp_path, capsys):
    sweep = _write_sweep(tmp_path, grad_cov_traces(lrs=(0.01, 0.04), batches=(16, 128)))
    assert main(["plot", str(sweep), "--kind", "all", "--facet", "", "--format", "png"]) == 0
    assert (sweep / "figures" / "grad_cov.png").exists()
    assert not (sweep / "figures" / "noise_kernel.png").exists()


# ----------------------------------------------------------------------------- the figure entries
def _cells(overrides):
    base = compose([o for o in overrides if not is_sweep(o)])
    keys = {o.split("=", 1)[0] for o in overrides}
    merged = [f"{k}={v}" for k, v in (base.get("grid") or {}).items() if k not in keys] + list(overrides)
    return base, split_overrides(merged)


@pytest.mark.parametrize("name", NEW)
def test_diagnostic_figures_compose_at_both_scales(name):
    fig = get_figure(name)
    if fig.missing():
        pytest.skip(f"{name}: {', '.join(fig.missing())} not in the config schema yet")
    assert fig.quick is not None and fig.quick.minutes and fig.source
    for scale in SCALES:
        for exp in fig.experiments:
            base, cells = _cells(fig.overrides(exp, scale))
            assert base.sweep_name == fig.sweep_name(scale)
            for cell in (cells[0], cells[-1]):
                compose(cell)
    quick, _ = _cells(fig.overrides(fig.experiments[0], "quick"))
    paper, _ = _cells(fig.overrides(fig.experiments[0], "paper"))
    assert quick.steps < paper.steps and quick.model.name == "fcn"


def test_gilmer_settings():
    g4, cells = _cells(get_figure("gilmer4").overrides("gilmer4", "paper"))
    assert (g4.model.name, g4.batch_size, g4.lr, g4.optimizer.momentum, g4.decay.value) == (
        "wrn", 2048, 0.1, 0.9, "cosine")
    assert sorted(int(o.split("=")[1]) for c in cells for o in c if o.startswith("warmup=")) == [1, 100, 1000, 4000]
    q4, qcells = _cells(get_figure("gilmer4").overrides("gilmer4", "quick", NPZ))
    assert (q4.model.name, q4.model.width, q4.lr, q4.lr_unit.value, q4.data.name) == ("fcn", 256, 32.0, "sharpness", "npz")
    assert len(qcells) == 4
    g16, cells16 = _cells(get_figure("gilmer16").overrides("gilmer16", "paper"))
    assert g16.warmup == 1000
    assert sorted(int(o.split("=")[1]) for c in cells16 for o in c if o.startswith("batch_size=")) == [32, 128, 512, 2048]
    _, q16 = _cells(get_figure("gilmer16").overrides("gilmer16", "quick"))
    assert sorted(int(o.split("=")[1]) for c in q16 for o in c if o.startswith("batch_size=")) == [0, 32, 128, 512]


def test_new_figures_are_listed_titled_and_dry_run(tmp_path, capsys):
    assert set(NEW) <= set(FIGURES)
    assert get_figure("gilmer4").title("quick").startswith("Gilmer et al. 2022 Figs. 4, 15 · quick: FCN-4-256")
    assert get_figure("jastrzebski4").title("paper").startswith("Jastrzebski et al. 2020 Fig. 4 · paper")
    assert main(["figures", "--list"]) == 0
    out = capsys.readouterr().out
    for name in NEW:
        assert f"\n{name} " in f"\n{out}"
    assert main(["figures", "--dry-run", "gilmer16", *NPZ, f"results_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "[gilmer16] sweep 'gilmer16_quick': 4 runs in 4 cohorts" in out
    assert f"would draw: sweep plot {tmp_path}/gilmer16_quick --kind batch_sharpness" in out
    assert not (tmp_path / "gilmer16_quick").exists()


def test_a_figure_whose_probe_is_missing_fails_in_one_line(monkeypatch, capsys):
    fig = get_figure("jastrzebski4")
    assert fig.requires == ("probe.grad_cov",) and get_figure("agarwala3").requires == ("probe.ntk_trace",)
    import dataclasses

    from sweep import figures as figures_module

    fake = dataclasses.replace(fig, requires=("probe.no_such_switch",))
    monkeypatch.setitem(figures_module.FIGURES, "jastrzebski4", fake)
    assert main(["figures", "jastrzebski4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs probe.no_such_switch" in err
