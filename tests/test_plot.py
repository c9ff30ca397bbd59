"""Plotting: the drawn data equals the records, axes are log-2 and labelled, the CLI writes figures."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.patches import Rectangle

from record_factory import LAMBDA0, realistic_sweep, toy_trace, write_run
from sweep import aggregate as agg
from sweep import plot
from sweep.cli import main
from sweep.config import ConfigError

LR_EXPONENTS = range(0, 7)
WARMUP_EXPONENTS = (0, 2, 4)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """7 lr x 3 warmup x {sp, mup}, lr set in units of 1/lambda0; one SP cell never ran."""
    d = tmp_path_factory.mktemp("plots") / "phase"
    truth = realistic_sweep(d, LR_EXPONENTS, WARMUP_EXPONENTS, with_traces=False, eta_c=True)
    missing = truth[(truth.param == "sp") & (truth.x == 0) & (truth.warmup == 16)].run_id.item()
    (d / "runs" / missing / "record.json").unlink()
    truth.loc[truth.run_id == missing, "outcome"] = "missing"
    summary, _ = agg.aggregate(d)
    return d, summary, truth


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def expected(truth: pd.DataFrame, param: str, column: str) -> pd.DataFrame:
    t = truth[truth.param == param]
    return t.pivot(index="warmup", columns="x", values=column).sort_index().sort_index(axis=1)


def panels(fig, prefix="phase:"):
    return [ax for ax in fig.axes if (ax.get_gid() or "").startswith(prefix)]


@pytest.mark.parametrize("param", ["sp", "mup"])
def test_heatmap_table_is_nan_exactly_off_converged_cells(sweep, param):
    _, summary, truth = sweep
    table = plot.heatmap_table(summary, "best_test_acc", {"param": param}, lr_units="lambda0")
    states = plot.cell_states(summary, {"param": param}, lr_units="lambda0")
    outcome = expected(truth, param, "outcome")
    acc = expected(truth, param, "best_test_acc")
    np.testing.assert_allclose(table.columns, [2.0 ** x for x in outcome.columns])
    np.testing.assert_array_equal(table.index, outcome.index)
    np.testing.assert_array_equal(states.to_numpy(), outcome.to_numpy())
    np.testing.assert_array_equal(np.isnan(table.to_numpy()), outcome.to_numpy() != "converged")
    conv = outcome.to_numpy() == "converged"
    np.testing.assert_allclose(table.to_numpy()[conv], acc.to_numpy()[conv])
    assert (outcome.to_numpy() == "diverged").any() and (outcome.to_numpy() == "failed").any()


def test_drawn_mesh_and_failed_hatches_match_the_table(sweep):
    _, summary, truth = sweep
    fig = plot.heatmap(summary, metric="best_test_acc", facet="param", lr_units="lambda0")
    axes = panels(fig)
    for ax, param in zip(axes, ["mup", "sp"]):  # panels in sorted facet order
        (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
        drawn = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(len(WARMUP_EXPONENTS), -1)
        table = plot.heatmap_table(summary, "best_test_acc", {"param": param}, lr_units="lambda0")
        np.testing.assert_array_equal(drawn, table.to_numpy())
        hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
        assert len(hatched) == (expected(truth, param, "outcome").to_numpy() == "failed").sum()
        marks = [t.get_text() for t in ax.texts]
        outcome = expected(truth, param, "outcome").to_numpy()
        assert marks.count("E") == (outcome == "error").sum()
        assert marks.count("?") == (outcome == "missing").sum()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "diverged (empty)" in legend and "failed" in legend


def _with_xent(summary: pd.DataFrame) -> pd.DataFrame:
    xent = summary.assign(loss="xent", run_id=summary.run_id + "x", setting=summary.setting + "x")
    return pd.concat([summary, xent], ignore_index=True)


@pytest.mark.parametrize("facet, count", [(None, 2), ("param", 2), ("param,loss", 4), (None, 4)])
def test_one_panel_per_facet_value(tmp_path, sweep, facet, count):
    _, summary, _ = sweep
    data = summary if count == 2 else _with_xent(summary)
    fig = plot.heatmap(data, facet=facet, lr_units="lambda0")
    assert len(panels(fig)) == count
    assert len({ax.get_title() for ax in panels(fig)}) == count


def test_a_cell_of_runs_that_differ_beyond_the_axes_is_refused_in_one_line(sweep):
    _, summary, _ = sweep
    with pytest.raises(ConfigError, match=r"runs of one cell .* differ in param \(mup, sp\): draw them apart "
                                          r"with --facet param"):
        plot.heatmap(_with_xent(summary), facet="loss", lr_units="lambda0")
    longer = summary.assign(steps=summary.steps * 2, run_id=summary.run_id + "l", setting=summary.setting + "l")
    with pytest.raises(ConfigError, match=r"differ in steps \(100, 200\)"):
        plot.heatmap(pd.concat([summary, longer], ignore_index=True), facet="param", lr_units="lambda0")
    seeds = summary.assign(seed=summary.seed + 1, run_id=summary.run_id + "s")  # seeds average in a cell
    assert len(panels(plot.heatmap(pd.concat([summary, seeds], ignore_index=True), lr_units="lambda0"))) == 2


def test_axes_are_log2_with_paper_tick_labels(sweep):
    _, summary, _ = sweep
    ax = panels(plot.heatmap(summary, facet="param", lr_units="lambda0"))[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert ax.get_yscale() == "log" and ax.yaxis.get_transform().base == 2
    np.testing.assert_allclose(ax.get_xticks(), [2.0 ** x for x in LR_EXPONENTS])
    np.testing.assert_allclose(ax.get_yticks(), [2.0 ** k for k in WARMUP_EXPONENTS])
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"$2^{{{x}}}/\\lambda_0$" for x in LR_EXPONENTS]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"$2^{{{k}}}$" for k in WARMUP_EXPONENTS]
    # cells are centred on the grid values: edges halfway in log2
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    xs = np.unique(mesh.get_coordinates()[..., 0])
    np.testing.assert_allclose(np.log2(xs), np.arange(-0.5, len(LR_EXPONENTS)))


def test_absolute_lr_ticks_for_a_power_of_ten_base():
    labels = plot.lr_tick_labels([1e-5, 2e-5, 4e-5], "lr")
    assert labels == [r"$2^{0}\cdot10^{-5}$", r"$2^{1}\cdot10^{-5}$", r"$2^{2}\cdot10^{-5}$"]
    assert plot.lr_tick_labels([0.25, 0.5], "lr") == ["$2^{-2}$", "$2^{-1}$"]


def test_colour_bar_is_labelled_with_metric_and_units(sweep):
    _, summary, _ = sweep
    fig = plot.heatmap(summary, metric="final_test_loss", facet="param", shared_scale=True)
    labels = [ax.get_ylabel() for ax in fig.axes if not ax.get_gid()]
    assert labels == ["final test loss (MSE)"]  # one shared colour bar
    fig = plot.heatmap(summary, metric="best_test_acc", facet="param", shared_scale=False)
    labels = [ax.get_ylabel() for ax in fig.axes if not ax.get_gid()]
    assert labels == ["best test accuracy (fraction correct)"] * 2


def test_shared_scale_uses_one_range_across_panels_by_default(sweep):
    _, summary, _ = sweep
    fig = plot.heatmap(summary, facet="param")
    limits = {[c for c in ax.collections if isinstance(c, QuadMesh)][0].get_clim() for ax in panels(fig)}
    assert len(limits) == 1
    accs = summary.loc[summary.outcome == "converged", "best_test_acc"]
    np.testing.assert_allclose(limits.pop(), (accs.min(), accs.max()))


def test_a_cell_with_seeds_shows_worst_outcome_and_mean_of_converged(tmp_path):
    d = tmp_path / "seeds"
    write_run(d, "a0", lr=0.5, warmup=1, seed=0, metrics={"best_test_acc": 0.8})
    write_run(d, "a1", lr=0.5, warmup=1, seed=1, metrics={"best_test_acc": 0.6})
    write_run(d, "b0", lr=1.0, warmup=1, seed=0, metrics={"best_test_acc": 0.9})
    write_run(d, "b1", lr=1.0, warmup=1, seed=1, outcome="diverged")
    summary, _ = agg.aggregate(d)
    table = plot.heatmap_table(summary, lr_units="absolute")
    assert table.loc[1, 0.5] == pytest.approx(0.7) and np.isnan(table.loc[1, 1.0])
    assert plot.cell_states(summary, lr_units="absolute").loc[1, 1.0] == "diverged"


def test_trajectory_threshold_curve_is_two_over_lr(tmp_path):
    d = tmp_path / "traj"
    for k in (0, 3, 6):
        write_run(d, f"w{k}", lr=2.0 ** 4 / 50, warmup=2 ** k, trace=toy_trace(2.0 ** 4 / 50, 2 ** k, 50.0, 80))
    _, traces = agg.aggregate(d)
    fig = plot.trajectories(traces, lr=16, lr_units="lambda0")
    (ax_sharp,) = panels(fig, "trajectory:sharpness")
    (ax_loss,) = panels(fig, "trajectory:loss")
    dashed = {line.get_gid(): line for line in ax_sharp.lines if line.get_linestyle() == "--"}
    assert sorted(dashed) == ["threshold:1", "threshold:64", "threshold:8"]
    for k in (0, 3, 6):
        trace = pd.read_parquet(d / "runs" / f"w{k}" / "trace.parquet")
        line = dashed[f"threshold:{2 ** k}"]
        np.testing.assert_array_equal(line.get_xdata(), trace["step"])
        np.testing.assert_allclose(line.get_ydata(), 2.0 / trace["lr"], rtol=1e-12)
        loss = [ln for ln in ax_loss.lines if ln.get_gid() == f"loss:{2 ** k}"][0]
        np.testing.assert_allclose(loss.get_ydata(), trace["train_loss"])
    assert ax_sharp.get_yscale() == "log" and ax_loss.get_yscale() == "log"
    assert "$2^{4}/\\lambda_0$" in ax_sharp.get_title()


def test_adam_trajectories_draw_sharpness_and_preconditioned_sharpness(tmp_path):
    """Kalra & Barkeshli Fig. 2: loss, sharpness and P^-1 H, the threshold (2+2b1)/(eta(1-b1)) beside P^-1 H."""
    d = tmp_path / "adam"
    trace = toy_trace(1e-3, 4, 50.0, 20)
    trace["precond_sharpness"] = trace["sharpness"] * 3
    trace["threshold"] = (2 + 2 * 0.9) / (trace["lr"] * (1 - 0.9))
    write_run(d, "a", lr=1e-3, warmup=4, optimizer="gi_adam", trace=trace)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute")
    (ax_h,) = panels(fig, "trajectory:sharpness")
    (ax_pc,) = panels(fig, "trajectory:precond_sharpness")
    lines_h = {ln.get_gid(): ln for ln in ax_h.lines}
    lines_pc = {ln.get_gid(): ln for ln in ax_pc.lines}
    np.testing.assert_allclose(lines_h["sharpness:4"].get_ydata(), trace["sharpness"])
    np.testing.assert_allclose(lines_pc["precond_sharpness:4"].get_ydata(), trace["precond_sharpness"])
    np.testing.assert_allclose(lines_pc["threshold:4"].get_ydata(), trace["threshold"])
    assert "threshold:4" not in lines_h  # Adam's (2+2b1)/(eta(1-b1)) bounds P^-1 H, not H
    assert "sharpness_threshold:4" not in lines_pc
    assert "preconditioned" in ax_pc.get_title() and "preconditioned" not in ax_h.get_title()
    assert "GI-Adam" in fig._suptitle.get_text() and "SP" in fig._suptitle.get_text()


def test_adam_sharpness_panel_draws_two_plus_two_beta1_over_eta(tmp_path):
    """Kalra & Barkeshli Sec. 4.3: Adam's sharpness lies far below "its instability threshold
    (2+2 beta_1)/eta_t": the sharpness panel draws it (derived from the trace's P^-1 H threshold), with or
    without a P^-1 H probe, and each panel's legend names its own threshold."""
    for b1, pc in ((0.9, True), (0.8, False)):
        d = tmp_path / f"adam{b1}"
        trace = toy_trace(1e-3, 4, 50.0, 20)
        if pc:
            trace["precond_sharpness"] = trace["sharpness"] * 3
        trace["threshold"] = (2 + 2 * b1) / (trace["lr"] * (1 - b1))
        write_run(d, "a", lr=1e-3, warmup=4, optimizer="adam", trace=trace)
        fig = plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute")
        (ax_h,) = panels(fig, "trajectory:sharpness")
        lines_h = {ln.get_gid(): ln for ln in ax_h.lines}
        np.testing.assert_allclose(lines_h["sharpness_threshold:4"].get_ydata(), (2 + 2 * b1) / trace["lr"],
                                   rtol=1e-9)
        assert ax_h.get_legend().get_texts()[-1].get_text() == r"threshold $(2+2\beta_1)/\eta_t$"
        if pc:
            (ax_pc,) = panels(fig, "trajectory:precond_sharpness")
            assert ax_pc.get_legend().get_texts()[-1].get_text() == \
                r"threshold $(2+2\beta_1)/(\eta_t(1-\beta_1))$"


@pytest.mark.parametrize("augment, loss, drawn", [
    (None, "auto", "train_loss"), ({"flip": True, "crop": 4, "mixup": 1.0}, "auto", "probe_loss"),
    ({"flip": True}, "train", "train_loss"), (None, "probe", "probe_loss")])
def test_trajectory_loss_is_the_measurement_batch_when_training_data_are_augmented(tmp_path, augment, loss, drawn):
    """Augmented runs share each step's augmentation draws, so their update-batch losses jump together:
    auto draws the fixed measurement batch's loss instead, and the axis says which loss it is."""
    d = tmp_path / "aug"
    trace = toy_trace(0.02, 4, 50.0, 20)
    trace["probe_loss"] = trace["train_loss"] * 0.5 + 0.01
    write_run(d, "a", lr=0.02, warmup=4, trace=trace, augment=augment)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=0.02, lr_units="absolute", loss=loss)
    (ax,) = panels(fig, "trajectory:loss")
    line = [ln for ln in ax.lines if ln.get_gid() == "loss:4"][0]
    np.testing.assert_allclose(line.get_ydata(), trace[drawn])
    assert ("measurement-batch loss" in ax.get_ylabel()) == (drawn == "probe_loss")


def test_momentum_threshold_legend_says_two_plus_two_beta(tmp_path):
    d = tmp_path / "mom"
    write_run(d, "a", lr=0.02, warmup=4, trace=toy_trace(0.02, 4, 50.0, 20, momentum=0.9), momentum=0.9)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=0.02, lr_units="absolute")
    (ax,) = panels(fig, "trajectory:sharpness")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[-2].startswith(r"threshold $(2+2\beta)/\eta_t$ = 3.8")
    assert labels[-1] == r"reference $2/\eta_t$"  # Figs. 9/10 draw 2/eta_t beside (2+2 beta)/eta_t
    trace = pd.read_parquet(d / "runs" / "a" / "trace.parquet")
    (reference,) = [ln for ln in ax.lines if ln.get_gid() == "reference:4"]
    np.testing.assert_allclose(reference.get_ydata(), 2.0 / trace["lr"], rtol=1e-12)
    assert "SGD with momentum β=0.9" in fig._suptitle.get_text()
    write_run(tmp_path / "plain", "b", lr=0.02, warmup=4, trace=toy_trace(0.02, 4, 50.0, 20))
    fig = plot.trajectories(agg.aggregate(tmp_path / "plain")[1], lr=0.02, lr_units="absolute")
    (ax,) = panels(fig, "trajectory:sharpness")
    assert ax.get_legend().get_texts()[-1].get_text() == r"threshold $2/\eta_t$"
    assert not [ln for ln in ax.lines if (ln.get_gid() or "").startswith("reference:")]


def test_adam_threshold_legend_without_a_preconditioned_probe(tmp_path):
    """An Adam sweep that did not measure P^-1 H still labels its threshold as Adam's, not SGD-M's."""
    d = tmp_path / "adam_nopc"
    trace = toy_trace(1e-3, 4, 50.0, 20)
    trace["threshold"] = (2 + 2 * 0.9) / (trace["lr"] * (1 - 0.9))
    write_run(d, "a", lr=1e-3, warmup=4, optimizer="adam", trace=trace)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute")
    (ax,) = panels(fig, "trajectory:sharpness")
    assert "beta_1" in ax.get_legend().get_texts()[-1].get_text()


def test_trajectory_loss_choice_is_checked(tmp_path):
    d = tmp_path / "one"
    write_run(d, "a", lr=0.1, warmup=1, trace=toy_trace(0.1, 1, 50.0, 5))
    with pytest.raises(ConfigError, match="--loss test"):
        plot.trajectories(agg.aggregate(d)[1], lr=0.1, lr_units="absolute", loss="test")


def test_trajectories_at_an_unknown_lr_is_a_user_error(tmp_path):
    d = tmp_path / "one"
    write_run(d, "a", lr=0.1, warmup=1, trace=toy_trace(0.1, 1, 50.0, 5))
    with pytest.raises(ConfigError, match="no runs at lr=0.3"):
        plot.trajectories(agg.aggregate(d)[1], lr=0.3, lr_units="absolute")


def test_treach_tsave_panels_and_missing_eta_c(sweep, tmp_path):
    _, summary, truth = sweep
    fig = plot.treach_tsave(summary, facet="param")
    assert [ax.get_gid() for ax in panels(fig)] == ["phase:t_reach", "phase:t_save"] * 2
    table = plot.heatmap_table(summary, "t_reach", {"param": "sp"}, lr_units="lambda0")
    conv = expected(truth, "sp", "outcome").to_numpy() == "converged"
    np.testing.assert_array_equal(np.isfinite(table.to_numpy()), conv)
    with pytest.raises(ConfigError, match="eta_c"):
        plot.treach_tsave(summary.assign(t_reach=np.nan))


def test_sharpness_scatter_marks_diverged_runs_with_x(tmp_path):
    d = tmp_path / "gilmer"
    lam = LAMBDA0["sp"]
    write_run(d, "ok", lr=1 / lam, warmup=4, trace=toy_trace(1 / lam, 4, lam, 30))
    write_run(d, "ok2", lr=2 / lam, warmup=16, trace=toy_trace(2 / lam, 16, lam, 30))
    bad = toy_trace(64 / lam, 1, lam, 30, diverge_at=6)
    bad.loc[bad.step == 6, "sharpness"] = np.nan  # the divergent probe itself has no finite sharpness
    write_run(d, "bad", lr=64 / lam, warmup=1, outcome="diverged", trace=bad)
    summary, traces = agg.aggregate(d)
    fig = plot.sharpness_scatter(summary, traces, step=20)
    (ax0,) = panels(fig, "scatter:init")
    (ax1,) = panels(fig, "scatter:step20")
    crosses = [c for c in ax1.collections if c.get_gid() == "diverged"]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == 1
    last = bad[np.isfinite(bad.sharpness)].iloc[-1]
    np.testing.assert_allclose(crosses[0].get_offsets()[0], [last["lr"], last["sharpness"]])
    circles = [c for c in ax0.collections if c.get_gid() == "converged"][0]
    np.testing.assert_allclose(circles.get_offsets()[:, 1], [lam, lam])
    (line,) = [ln for ln in ax0.lines if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(line.get_ydata() * line.get_xdata(), 2.0)  # lambda = 2/eta


def test_text_phase_diagram_marks_each_state(sweep):
    _, summary, truth = sweep
    text = plot.text_phase_diagram(summary, facet="param", lr_units="lambda0")
    blocks = text.split("\n\n")
    assert [b.splitlines()[0].split("]")[0] for b in blocks] == ["[μP", "[SP"]
    for block, param in zip(blocks, ["mup", "sp"]):
        rows = [line.split("| ")[1].split(" ") for line in block.splitlines()[1:-1]]
        outcome = expected(truth, param, "outcome").to_numpy()[::-1]  # longest warmup on top
        chars = np.array(rows)
        assert chars.shape == outcome.shape
        for state, char in (("diverged", "D"), ("failed", "F"), ("error", "E"), ("missing", "?")):
            np.testing.assert_array_equal(chars == char, outcome == state)
        acc = expected(truth, param, "best_test_acc").to_numpy()[::-1]
        best = np.where(outcome == "converged", acc, -np.inf)
        assert chars.flat[np.argmax(best)] == "@"
        worst = np.where(outcome == "converged", acc, np.inf)
        assert chars.flat[np.argmin(worst)] == "."


def test_text_phase_diagram_inverts_shades_for_losses(tmp_path):
    d = tmp_path / "loss"
    write_run(d, "a", lr=0.5, warmup=1, metrics={"final_test_loss": 0.1})
    write_run(d, "b", lr=1.0, warmup=1, metrics={"final_test_loss": 0.9})
    text = plot.text_phase_diagram(agg.aggregate(d)[0], metric="final_test_loss", lr_units="absolute")
    assert text.splitlines()[1].endswith("| @ .")


def test_bad_facet_and_metric_are_user_errors(sweep):
    _, summary, _ = sweep
    with pytest.raises(ConfigError, match="facet column"):
        plot.heatmap(summary, facet="nope")
    with pytest.raises(ConfigError, match="metric 'nope'"):
        plot.heatmap(summary, metric="nope")


def test_plot_command_aggregates_then_writes_figures_and_sidecars(tmp_path, capsys):
    d = tmp_path / "cli"
    realistic_sweep(d, range(0, 3), (0, 3), params=("sp",), eta_c=True, steps=20)
    assert not (d / "summary.parquet").exists()
    assert main(["plot", str(d), "--kind", "all", "--format", "png", "--annotate"]) == 0
    assert (d / "summary.parquet").exists()
    names = sorted(p.name for p in (d / "figures").iterdir())
    stems = ["heatmap_best_test_acc", "sharpness_scatter", "trajectories", "treach_tsave"]
    assert names == sorted([f"{s}.{e}" for s in stems for e in ("json", "png")])
    meta = json.loads((d / "figures" / "heatmap_best_test_acc.json").read_text())
    assert meta["command"] == f"sweep plot {d} --kind all --lr-units auto --format png --annotate"
    summary, traces = agg.aggregate(d)
    assert meta["data"] == [{"path": str(d / "summary.parquet"), "rows": len(summary)},
                            {"path": str(d / "traces.parquet"), "rows": len(traces)}]
    assert (d / "figures" / "trajectories.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_command_default_formats_and_user_errors(tmp_path, capsys):
    d = tmp_path / "cli2"
    realistic_sweep(d, range(0, 2), (0,), params=("sp",), with_traces=False)
    assert main(["plot", str(d), "--kind", "heatmap", "--metric", "final_test_loss"]) == 0
    assert sorted(p.name for p in (d / "figures").iterdir()) == [
        "heatmap_final_test_loss.json", "heatmap_final_test_loss.pdf", "heatmap_final_test_loss.png"]
    assert (d / "figures" / "heatmap_final_test_loss.pdf").read_bytes()[:4] == b"%PDF"
    capsys.readouterr()
    assert main(["plot", str(d), "--kind", "treach"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no t_reach") and err.count("\n") == 1


def test_diverged_trajectory_stops_at_its_last_finite_probe(tmp_path):
    d = tmp_path / "frozen"
    trace = toy_trace(0.5, 2, 50.0, 20)
    trace.loc[trace.step > 7, ["train_loss", "sharpness"]] = np.nan  # frozen member: NaN rows go on
    write_run(d, "x", lr=0.5, warmup=2, outcome="diverged", trace=trace)
    write_run(d, "y", lr=0.5, warmup=4, trace=toy_trace(0.5, 4, 50.0, 20))
    fig = plot.trajectories(agg.aggregate(d)[1], lr=0.5, lr_units="absolute")
    (ax,) = panels(fig, "trajectory:sharpness")
    lines = {ln.get_gid(): ln for ln in ax.lines}
    assert list(lines["threshold:2"].get_xdata()) == list(range(8))
    assert len(lines["threshold:4"].get_xdata()) == 21


def test_a_diverged_run_does_not_stretch_the_log_axes_of_the_others(tmp_path):
    """A run that reached 1e30 would flatten the other runs' catapults to a line: the axis ends
    DIVERGED_HEADROOM x above the runs that did not diverge, and the x sits on the top edge."""
    d = tmp_path / "wild"
    wild = toy_trace(0.5, 2, 50.0, 20)
    wild.loc[wild.step >= 3, ["train_loss", "sharpness"]] = 10.0 ** (3.0 * wild.loc[wild.step >= 3, "step"])
    wild.loc[wild.step > 10, ["train_loss", "sharpness"]] = np.nan
    write_run(d, "x", lr=0.5, warmup=2, outcome="diverged", trace=wild)
    calm = toy_trace(0.5, 4, 50.0, 20)
    write_run(d, "y", lr=0.5, warmup=4, trace=calm)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=0.5, lr_units="absolute")
    (ax_loss,) = panels(fig, "trajectory:loss")
    top = ax_loss.get_ylim()[1]
    assert top == pytest.approx(calm["train_loss"].max() * plot.DIVERGED_HEADROOM)
    (marker,) = [ln for ln in ax_loss.lines if ln.get_gid() == "diverged:2"]
    assert marker.get_ydata()[0] == pytest.approx(top)
    (ax_sharp,) = panels(fig, "trajectory:sharpness")
    calm_top = max(calm["sharpness"].max(), (2.0 / calm["lr"]).max())
    assert ax_sharp.get_ylim()[1] == pytest.approx(calm_top * plot.DIVERGED_HEADROOM)
    plt.close(fig)
    write_run(d, "x", lr=0.5, warmup=2, outcome="diverged", trace=toy_trace(0.5, 2, 50.0, 20))
    fig = plot.trajectories(agg.aggregate(d)[1], lr=0.5, lr_units="absolute")  # a mild one: untouched
    (ax_loss,) = panels(fig, "trajectory:loss")
    assert ax_loss.get_ylim()[1] < calm["train_loss"].max() * plot.DIVERGED_HEADROOM


def test_trajectory_panels_name_the_lr_once(tmp_path):
    """Faceted by the lr itself (Fig. 9's rows), the title says eta_trgt once, not the column name too."""
    d = tmp_path / "two_lrs"
    for lr in (1.0 / 50, 32.0 / 50):
        write_run(d, f"r{lr}", lr=lr, warmup=4, trace=toy_trace(lr, 4, 50.0, 20))
    traces = agg.aggregate(d)[1]
    fig = plot.trajectories(traces, facet="target_lr_over_lambda0", lr_units="lambda0")
    titles = [ax.get_title() for ax in panels(fig, "trajectory:sharpness")]
    assert len(titles) == 2 and not any("target_lr" in t for t in titles)
    assert "$2^{0}/\\lambda_0$" in titles[0] and "$2^{5}/\\lambda_0$" in titles[1]


def test_a_single_decade_lr_reads_as_a_power_of_ten():
    assert plot.lr_tick_labels([1e-3], "lr") == ["$10^{-3}$"]
    assert plot.lr_tick_labels([1e-3, 4e-3], "lr") == ["$2^{0}\\cdot10^{-3}$", "$2^{2}\\cdot10^{-3}$"]
    # fig28's grid 2^x x 1e-5 for x = 4, 8, 12
    assert plot.lr_tick_labels([0.00016, 0.00256, 0.04096], "lr") == [
        "$2^{4}\\cdot10^{-5}$", "$2^{8}\\cdot10^{-5}$", "$2^{12}\\cdot10^{-5}$"]


def test_a_panel_of_one_value_gets_a_readable_colour_scale():
    """fig27's T_reach is 1 in every converged cell: the bar spans 0.5-1.5, not 1-1e-12..1."""
    norm = plot._colour_norm("t_reach", [pd.DataFrame([[1.0, 1.0], [1.0, np.nan]])])
    assert (norm.vmin, norm.vmax) == (0.5, 1.5) and norm(1.0) == pytest.approx(0.5)
    assert isinstance(plot._colour_norm("t_reach", [pd.DataFrame([[1.0, 97.0]])]), plt.matplotlib.colors.LogNorm)


def test_trajectories_can_draw_the_test_accuracy_instead_of_the_loss(tmp_path, capsys):
    """Figure 31 compares Adam variants by test accuracy vs step: --metric test_acc puts it in the first
    panel (linear axis, evaluation steps only); an unmeasured column is a one-line error."""
    d = tmp_path / "acc"
    trace = toy_trace(1e-3, 4, 50.0, 20)
    trace["test_acc"] = np.where(trace["step"] % 5 == 0, 0.1 + 0.01 * trace["step"], np.nan)
    write_run(d, "a", lr=1e-3, warmup=4, optimizer="adam", trace=trace)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute", metric="test_acc")
    (ax,) = panels(fig, "trajectory:loss")
    (line,) = [ln for ln in ax.lines if ln.get_gid() == "loss:4"]
    np.testing.assert_array_equal(line.get_xdata(), [0, 5, 10, 15, 20])
    np.testing.assert_allclose(line.get_ydata(), [0.1, 0.15, 0.2, 0.25, 0.3])
    assert ax.get_yscale() == "linear" and ax.get_ylabel().startswith("test accuracy")
    assert "test accuracy" in ax.get_title()
    with pytest.raises(ConfigError, match="--metric grad_cov_top: not a measured trace column here; choose from"):
        plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute", metric="grad_cov_top")
    assert main(["plot", str(d), "--kind", "trajectories", "--metric", "test_acc", "--lr", "0.001",
                 "--lr-units", "absolute", "--format", "png"]) == 0
    trace["sharpness"] = np.nan  # probe.sharpness=false (fig31's quick runs): no empty sharpness panel
    write_run(d, "a", lr=1e-3, warmup=4, optimizer="adam", trace=trace)
    fig = plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute", metric="test_acc")
    assert [ax.get_gid() for ax in fig.axes] == ["trajectory:loss"]
    write_run(d, "b", lr=2e-3, warmup=4, optimizer="adam", trace=trace.assign(lr=trace["lr"] * 2))
    fig = plot.trajectories(agg.aggregate(d)[1], facet="target_lr", lr_units="absolute", metric="test_acc")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 2 and shown[0].get_position().y0 == pytest.approx(shown[1].get_position().y0)  # side by side
    fig = plot.trajectories(agg.aggregate(d)[1], lr=1e-3, lr_units="absolute", metric="test_acc")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["$T_{\\mathrm{wrm}}=2^{2}$"]


def test_titles_name_the_data_set_a_generic_loader_read():
    """`data=npz data.path=.../cifar10_subset.npz`: the title said only "npz"."""
    row = agg.standard_columns({"data": {"name": "npz", "path": "/data/cifar10_subset.npz"}, "model": {"name": "fcn"}})
    assert row["data_file"] == "cifar10_subset.npz"
    assert agg.standard_columns({"data": {"name": "digits"}})["data_file"] is None
    df = pd.DataFrame({"data": ["npz", "npz"], "data_file": ["cifar10_subset.npz"] * 2, "model": ["fcn", "fcn"]})
    assert plot._context_title(df, []) == "FCN, npz (cifar10_subset.npz)"
    assert plot._context_title(pd.DataFrame({"data": ["cifar10"], "data_file": [None]}), []) == "CIFAR-10"
    assert "data_file" not in plot.default_facets(df.assign(param=["sp", "mup"], data_file=["a.npz", "b.npz"]))


def test_title_line_fits_a_one_panel_figure():
    """A long scale line (sweep figures) on a one-panel heatmap was cut at both edges of the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sweep.plot import add_title_line

    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1])
    add_title_line(fig, "Kalra & Barkeshli Fig. 3_wrn · quick: WRN-16-1 (not 16-4), 5k CIFAR-10, MSE, 60 steps "
                        "(not 1e5), lr 2^0..2^5/lambda0 (fixed), T_wrm 1,8,32, no mixup, lambda0 on 128 examples")
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
    plt.close(fig)
