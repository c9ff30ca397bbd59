"""Figures of the supporting papers' diagnostics, drawn from aggregated tables (like sweep.plot).

Every function takes the traces (and where needed the summary) DataFrames of one sweep and returns
a matplotlib Figure; the `*_table` functions return the numbers behind a figure, so notebooks,
REPRODUCING.md and the tests read the same values the figure shows.

- `warmup_push`      Gilmer et al. 2022, Figures 4 and 15 (and Fig. 1 right): warmup "pushes" the
                     trajectory to flatter regions; lambda_1 tracks 2/eta_t during warmup.
- `batch_sharpness`  Gilmer et al. 2022, Figure 16: mid-training lambda_1 sits below 2/eta at small
                     batch size and approaches it as the batch grows.
- `grad_cov`         Jastrzebski et al. 2020, Figure 4 (lambda_1^K) and Figures 10-13 (Tr K): a
                     larger lr or a smaller batch reaches a lower maximum of the gradient covariance's
                     spectral norm (the break-even point).
- `noise_kernel`     Agarwala & Pennington 2024, Figures 3 (right), 5 and 6: the noise kernel norm
                     K (from the NTK trace) against its stochastic edge-of-stability threshold K = 1.

Conventions shared with sweep.plot: log-2 lr axes, one colour per swept value ('plasma'), dashed
curves are thresholds, 'x' marks the last finite probe of a diverged run. Axes carry gids
(`push:sharpness`, `gradcov:max_vs_lr`, ...) and curves gids (`sharpness:<warmup>`, ...) so tests and
notebooks can find them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from sweep import plot as base
from sweep.config import ConfigError

CMAP = "plasma"
# Noise-kernel columns a probe may record directly (first found wins); otherwise it is estimated
# from `ntk_trace` (see noise_kernel_norm below).
NOISE_KERNEL_COLUMNS = ("noise_kernel_norm", "ntk_noise_kernel", "noise_kernel")


# ----------------------------------------------------------------------------- small helpers
def _log2_round(values) -> np.ndarray:
    """Grid values rounded in log2 so 3.9999999 and 4 compare equal."""
    v = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp2(np.round(np.log2(v), 6))


def _require(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df or df[c].isna().all()]
    if missing:
        raise ConfigError(f"{what}: no {', '.join(missing)} in the table (was the probe switched on? "
                          f"see docs/diagnostics.md)")


def _facets(df: pd.DataFrame, facet: str | Sequence[str] | None, exclude: Sequence[str] = ()) -> list[str]:
    """Facet columns: the given ones, or every varying column but the figure's own axes."""
    if facet is None:  # a facet is constant within a run (an unregistered measurement column is not)
        per_run = (lambda c: df.groupby("run_id")[c].nunique(dropna=False).max() <= 1) if "run_id" in df else (
            lambda c: True)
        return [c for c in base.default_facets(df) if c not in exclude and per_run(c)]
    cols = [c.strip() for c in facet.split(",")] if isinstance(facet, str) else list(facet)
    cols = ["loss_fn" if c == "loss" and "step" in df else c for c in cols if c]
    unknown = [c for c in cols if c not in df]
    if unknown:
        raise ConfigError(f"facet column(s) {', '.join(unknown)} not in the table")
    return cols


def _title(value: dict) -> str:
    return " · ".join(base.DISPLAY.get(str(v), f"{c}={v:.4g}" if isinstance(v, float) else f"{c}={v}")
                      if c not in ("param", "loss", "loss_fn", "optimizer", "model", "data", "param.name")
                      else base.DISPLAY.get(str(v), str(v)) for c, v in value.items())


def _colours(values: Sequence[float]) -> dict:
    cmap = plt.get_cmap(CMAP)
    values = sorted(values)
    return {v: cmap(0.85 * i / max(1, len(values) - 1)) for i, v in enumerate(values)}


def _until_last_finite(run: pd.DataFrame, column: str) -> pd.DataFrame:
    """Cut a diverged run's frozen rows after its last finite value of `column`."""
    finite = np.isfinite(pd.to_numeric(run[column], errors="coerce").to_numpy(float))
    if not finite.any() or "outcome" not in run or (run["outcome"] != "diverged").all():
        return run
    return run.iloc[: int(np.flatnonzero(finite)[-1]) + 1]


def _probed(run: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows where `column` was measured (probe steps), sorted by step, cut at divergence."""
    run = _until_last_finite(run.sort_values("step"), column)
    return run[np.isfinite(pd.to_numeric(run[column], errors="coerce").to_numpy(float))]


def _first_seed(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["seed"] == rows["seed"].min()] if "seed" in rows and rows["seed"].notna().any() else rows


def _runs(rows: pd.DataFrame):
    """(run_id, rows sorted by step) of each run."""
    for run_id, run in rows.groupby("run_id", sort=False):
        yield run_id, run.sort_values("step")


def batch_text(b) -> str:
    return "full batch" if b is None or not np.isfinite(b) or b <= 0 else f"B={int(b)}"


def _batch_key(b) -> float:
    """Sort key / x position of a batch size: full batch (0) after every minibatch."""
    return math.inf if b is None or not np.isfinite(b) or b <= 0 else float(b)


def _warmup_label(w) -> str:
    return f"$T_{{\\mathrm{{wrm}}}}={base.warmup_tick_labels([w])[0].strip('$')}$"


def _ratio(run: pd.DataFrame, sharp_col: str = "sharpness") -> np.ndarray:
    """lambda / threshold (= lambda eta_t / 2 for SGD): 1 is the edge of stability."""
    return (pd.to_numeric(run[sharp_col], errors="coerce") / pd.to_numeric(run["threshold"], errors="coerce")).to_numpy(float)


# ----------------------------------------------------------------------------- Gilmer et al. Figs. 4, 15
def _pick_lr(rows: pd.DataFrame, lr_col: str, lr: float | None) -> tuple[float, pd.DataFrame]:
    """The rows at target lr `lr` (default: the largest lr at which two warmups did not diverge)."""
    keys = _log2_round(rows[lr_col])
    if lr is None:
        per_run = rows.assign(_k=keys).drop_duplicates("run_id")
        ok = per_run[per_run["outcome"] != "diverged"] if "outcome" in per_run else per_run
        counts = ok.groupby("_k")["warmup"].nunique()
        good = counts[counts >= 2]
        lr = float(good.index.max()) if len(good) else float(np.nanmax(keys))
    chosen = rows[np.isclose(np.log2(rows[lr_col].astype(float)), math.log2(lr), atol=1e-3)]
    if chosen.empty:
        raise ConfigError(f"no runs at lr={lr:g} ({lr_col}); available: "
                          + ", ".join(f"{v:g}" for v in sorted(set(keys[np.isfinite(keys)]))))
    return lr, _first_seed(chosen)


CONTACT = 0.9  # lambda / threshold at which the trajectory is said to have reached the edge


def warmup_push_table(traces_df: pd.DataFrame, lr: float | None = None, lr_units: str = "auto") -> pd.DataFrame:
    """Per warmup at one target lr: lambda0, lambda at the end of warmup, lambda/threshold during warmup
    (median and max over probes 1 <= t <= T_wrm), the first step where it reaches CONTACT and its
    median from there to the end of warmup (how closely lambda rides 2/eta_t), the median after
    warmup, the final lambda, and the outcome."""
    _require(traces_df, ("sharpness", "threshold"), "warmup_push")
    lr_col = base.lr_column(traces_df, lr_units, traces=True)
    _, chosen = _pick_lr(traces_df, lr_col, lr)
    rows = []
    for _, run in _runs(chosen):
        probes = _probed(run, "sharpness")
        w = int(run["warmup"].iloc[0])
        ratio = _ratio(probes)
        steps = probes["step"].to_numpy()
        during = ratio[(steps >= 1) & (steps <= w)] if w > 1 else np.array([])
        after = ratio[steps > w]
        touched = np.flatnonzero(ratio >= CONTACT)
        contact = int(steps[touched[0]]) if touched.size else None
        riding = ratio[(steps >= (contact if contact is not None else np.inf)) & (steps <= w)]
        at_end = probes[probes["step"] <= w].tail(1)
        rows.append({
            "warmup": w, "outcome": run["outcome"].iloc[0] if "outcome" in run else None,
            "lambda0": float(probes["sharpness"].iloc[0]) if len(probes) else np.nan,
            "sharpness_end_of_warmup": float(at_end["sharpness"].iloc[0]) if len(at_end) else np.nan,
            "ratio_during_median": float(np.median(during)) if during.size else np.nan,
            "contact_step": contact,
            "ratio_after_contact_median": float(np.median(riding)) if riding.size else np.nan,
            "ratio_during_max": float(np.max(during)) if during.size else np.nan,
            "ratio_after_median": float(np.median(after)) if after.size else np.nan,
            "final_sharpness": float(probes["sharpness"].iloc[-1]) if len(probes) else np.nan,
            "last_step": int(probes["step"].iloc[-1]) if len(probes) else None,
        })
    return pd.DataFrame(rows).sort_values("warmup").reset_index(drop=True)


def warmup_push(traces_df: pd.DataFrame, lr: float | None = None, lr_units: str = "auto",
                facet: str | Sequence[str] | None = None) -> plt.Figure:
    """Gilmer et al. Figures 4 and 15: lambda_1 (solid) and 2/eta_t (dashed) against the step for several
    warmup lengths at one peak lr (left), and lambda_1 / (2/eta_t) against t / T_wrm (right): during
    warmup the ratio sits near 1 (the trajectory is "pushed" to flatter regions at the rate the warmup
    sets); without warmup it starts far above 1 (divergence or a catapult)."""
    if traces_df.empty:
        raise ConfigError("no traces in this sweep (no trace.parquet files yet)")
    _require(traces_df, ("sharpness", "threshold"), "warmup_push")
    lr_col = base.lr_column(traces_df, lr_units, traces=True)
    facet_cols = _facets(traces_df, facet)
    groups = base.facet_groups(traces_df, facet_cols)
    fig, axes = plt.subplots(len(groups), 2, figsize=(10.5, 3.6 * len(groups) + 0.5), layout="constrained",
                             squeeze=False)
    colour = _colours(traces_df["warmup"].dropna().unique())
    for (value, rows), (ax_s, ax_r) in zip(groups, axes):
        ax_s.set_gid("push:sharpness")
        ax_r.set_gid("push:ratio")
        target, chosen = _pick_lr(rows, lr_col, lr)
        kept_s, kept_r, blown = [], [], []  # finite values of converged runs: the y ranges
        for _, run in sorted(_runs(chosen), key=lambda kv: kv[1]["warmup"].iloc[0]):
            w = run["warmup"].iloc[0]
            probes = _probed(run, "sharpness")
            if probes.empty:
                continue
            c = colour.get(w, "k")
            ax_s.plot(probes["step"], probes["sharpness"], color=c, lw=1.4, label=_warmup_label(w),
                      gid=f"sharpness:{w:g}")
            ax_s.plot(probes["step"], probes["threshold"], color=c, lw=1.0, ls="--", gid=f"threshold:{w:g}")
            x = np.maximum(probes["step"].to_numpy(float), 0.5) / float(w)
            ax_r.plot(x, _ratio(probes), color=c, lw=1.4, label=_warmup_label(w), gid=f"ratio:{w:g}")
            diverged = "outcome" in run and (run["outcome"] == "diverged").any()
            if diverged:
                blown.append((probes["step"].iloc[-1], probes["sharpness"].iloc[-1], x[-1], _ratio(probes)[-1], c))
            else:
                kept_s += [*probes["sharpness"], *probes["threshold"]]
                kept_r += list(_ratio(probes))
        # a diverged run's last probes blow up by orders of magnitude: keep the axes on the converged
        # runs (and 2/eta_t) and pin the divergence marker at the top edge
        top_s = 30 * np.nanmax(kept_s) if kept_s else None
        top_r = 30 * max(1.0, np.nanmax(kept_r)) if kept_r else None
        for step, sharp, xr, ratio, c in blown:
            ax_s.plot([step], [min(sharp, top_s or sharp)], "x", color=c, ms=8, mew=2, clip_on=False)
            ax_r.plot([xr], [min(ratio, top_r or ratio)], "x", color=c, ms=8, mew=2, clip_on=False)
        ax_s.set_xscale("symlog", linthresh=1)
        ax_s.set_yscale("log")
        ax_r.set_yscale("log")
        if top_s:
            ax_s.set_ylim(np.nanmin([v for v in kept_s if v > 0]) / 2, top_s)
        if top_r:
            ax_r.set_ylim(np.nanmin([v for v in kept_r if v > 0]) / 2, top_r)
        ax_s.set_xlabel("step $t$")
        ax_s.set_ylabel(r"sharpness $\lambda_1$ (solid), $2/\eta_t$ (dashed)")
        ax_r.set_xscale("log")
        ax_r.set_yscale("log")
        ax_r.axhline(1.0, color="k", ls="--", lw=1)
        ax_r.axvline(1.0, color="0.6", ls=":", lw=1)
        lo, hi = ax_r.get_ylim()
        ax_r.axhspan(1.0, max(hi, 1.5), color="tab:red", alpha=0.07, lw=0)
        if lo > 0:
            ax_r.set_ylim(lo, hi)
        ax_r.set_xlabel(r"$t\,/\,T_{\mathrm{wrm}}$ (dotted: end of warmup)")
        ax_r.set_ylabel(r"$\lambda_1\,/\,(2/\eta_t)$")
        lr_text = base.lr_tick_labels([target], lr_col)[0]
        head = " · ".join(filter(None, [_title(value), rf"peak $\eta$ = {lr_text}"]))
        ax_s.set_title(f"{head}: sharpness and 2/η_t", fontsize=10)
        ax_r.set_title(f"{head}: λ₁ relative to the threshold (1 = edge)", fontsize=10)
        handles, labels = ax_s.get_legend_handles_labels()
        handles.append(Line2D([], [], color="0.3", ls="--"))
        labels.append(r"$2/\eta_t$ (momentum: $(2+2\beta)/\eta_t$)")
        ax_s.legend(handles, labels, fontsize=7, loc="best", framealpha=0.8)
    fig.suptitle("warmup pushes the trajectory to flatter regions (Gilmer et al. Figs. 4, 15; "
                 "×: last probe of a diverged run)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- Gilmer et al. Fig. 16
def batch_sharpness_table(traces_df: pd.DataFrame, after: str = "warmup") -> pd.DataFrame:
    """Per run: batch size, lr, warmup, outcome and mid-training lambda/threshold, the median over the
    probes after warmup (`after='warmup'`) or over the second half of the run (`after='half'`)."""
    _require(traces_df, ("sharpness", "threshold", "batch_size"), "batch_sharpness")
    rows = []
    for run_id, run in _runs(traces_df):
        probes = _probed(run, "sharpness")
        if probes.empty:
            continue
        steps = probes["step"].to_numpy()
        start = int(run["warmup"].iloc[0]) if after == "warmup" else int(steps.max() // 2)
        mid = probes[steps > start]
        if mid.empty:
            mid = probes.tail(1)
        ratio = _ratio(mid)
        rows.append({"run_id": run_id, "batch_size": run["batch_size"].iloc[0], "lr": float(run["lr"].max()),
                     "warmup": int(run["warmup"].iloc[0]),
                     "outcome": run["outcome"].iloc[0] if "outcome" in run else None,
                     "mid_sharpness": float(np.median(mid["sharpness"])),
                     "mid_threshold": float(np.median(mid["threshold"])),
                     "mid_ratio": float(np.median(ratio)), "mid_ratio_max": float(np.max(ratio))})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return out.assign(_k=out["batch_size"].map(_batch_key)).sort_values(["_k", "lr"]).drop(columns="_k") \
        .reset_index(drop=True)


def batch_sharpness(traces_df: pd.DataFrame, facet: str | Sequence[str] | None = None,
                    after: str = "warmup") -> plt.Figure:
    """Gilmer et al. Figure 16: lambda_1 against the step for several batch sizes with 2/eta_t dashed
    (left), and the mid-training lambda_1 / (2/eta) against the batch size (right): small batches
    hover well below the edge, large ones approach it (Wu et al.'s gradient-noise correction)."""
    if traces_df.empty:
        raise ConfigError("no traces in this sweep (no trace.parquet files yet)")
    table = batch_sharpness_table(traces_df, after)
    facet_cols = _facets(traces_df, facet, exclude=("batch_size",))
    groups = base.facet_groups(traces_df, facet_cols)
    fig, axes = plt.subplots(len(groups), 2, figsize=(10.5, 3.6 * len(groups) + 0.5), layout="constrained",
                             squeeze=False)
    batches = sorted(traces_df["batch_size"].dropna().unique(), key=_batch_key)
    cmap = plt.get_cmap("viridis")
    colour = {b: cmap(0.9 * i / max(1, len(batches) - 1)) for i, b in enumerate(batches)}
    finite = [b for b in batches if _batch_key(b) < math.inf]
    full_x = (max(finite) * 4) if finite else 1.0  # where "full batch" sits on the batch axis
    for (value, rows), (ax_s, ax_b) in zip(groups, axes):
        ax_s.set_gid("batch:sharpness")
        ax_b.set_gid("batch:mid_ratio")
        rows = _first_seed(rows)
        for _, run in sorted(_runs(rows), key=lambda kv: _batch_key(kv[1]["batch_size"].iloc[0])):
            b = run["batch_size"].iloc[0]
            probes = _probed(run, "sharpness")
            if probes.empty:
                continue
            c = colour[b]
            ax_s.plot(probes["step"], probes["sharpness"], color=c, lw=1.4, label=batch_text(b),
                      gid=f"sharpness:{batch_text(b)}")
            ax_s.plot(probes["step"], probes["threshold"], color=c, lw=0.9, ls="--", gid=f"threshold:{batch_text(b)}")
        ids = set(rows["run_id"])
        sub = table[table["run_id"].isin(ids)]
        for lr_value, line in sub.groupby("lr"):
            xs = [full_x if _batch_key(b) == math.inf else float(b) for b in line["batch_size"]]
            ok = (line["outcome"] != "diverged").to_numpy()
            ax_b.plot(np.asarray(xs)[ok], line["mid_ratio"].to_numpy()[ok], "o-", color="k", lw=1.2,
                      label=rf"$\eta$={lr_value:.3g}", gid=f"mid_ratio:{lr_value:.4g}")
            for x, r, b in zip(xs, line["mid_ratio"], line["batch_size"]):
                ax_b.plot([x], [r], "o", color=colour[b], ms=7, zorder=3)
        ax_b.axhline(1.0, color="k", ls="--", lw=1)
        ax_s.set_xscale("symlog", linthresh=1)
        ax_s.set_yscale("log")
        ax_s.set_xlabel("step $t$")
        ax_s.set_ylabel(r"sharpness $\lambda_1$ (solid), $2/\eta_t$ (dashed)")
        ax_s.legend(fontsize=7, loc="best", framealpha=0.8)
        ax_b.set_xscale("log", base=2)
        ticks = [full_x if _batch_key(b) == math.inf else float(b) for b in batches]
        ax_b.set_xticks(ticks, ["full" if _batch_key(b) == math.inf else f"{int(b)}" for b in batches])
        ax_b.set_xlabel("batch size $B$")
        which = "after warmup" if after == "warmup" else "second half"
        ax_b.set_ylabel(rf"median $\lambda_1/(2/\eta_t)$, {which}")
        head = _title(value)
        ax_s.set_title(" · ".join(filter(None, [head, "sharpness vs step"])), fontsize=10)
        ax_b.set_title(" · ".join(filter(None, [head, "mid-training sharpness / 2/η (1 = edge)"])), fontsize=10)
    fig.suptitle("mid-training sharpness approaches 2/η as the batch size grows (Gilmer et al. Fig. 16)",
                 fontsize=10)
    return fig


# ----------------------------------------------------------------------------- Jastrzebski et al. Fig. 4
GRAD_COV_LABELS = {"grad_cov_top": r"$\lambda_1^K$", "grad_cov_trace": r"$\mathrm{Tr}\,K$"}


def grad_cov_table(traces_df: pd.DataFrame, metric: str = "grad_cov_top") -> pd.DataFrame:
    """Per run: lr, batch size, outcome, the maximum of `metric` along the trajectory and its step
    (the break-even point), and the final value."""
    _require(traces_df, (metric,), "grad_cov")
    rows = []
    for run_id, run in _runs(traces_df):
        probes = _probed(run, metric)
        if probes.empty:
            continue
        i = int(np.argmax(probes[metric].to_numpy(float)))
        rows.append({"run_id": run_id, "target_lr": float(run["target_lr"].iloc[0]) if "target_lr" in run
                     else float(run["lr"].max()), "batch_size": run["batch_size"].iloc[0] if "batch_size" in run else None,
                     "warmup": run["warmup"].iloc[0] if "warmup" in run else None,
                     "outcome": run["outcome"].iloc[0] if "outcome" in run else None,
                     f"max_{metric}": float(probes[metric].iloc[i]), "argmax_step": int(probes["step"].iloc[i]),
                     f"final_{metric}": float(probes[metric].iloc[-1])})
    return pd.DataFrame(rows).sort_values(["batch_size", "target_lr"]).reset_index(drop=True)


def _reference(values: pd.Series, counts_by: pd.Series):
    """The value of `values` shared by the most distinct `counts_by` values (the 'vary the other' line)."""
    counts = pd.DataFrame({"v": values, "c": counts_by}).drop_duplicates().groupby("v")["c"].nunique()
    if not len(counts):
        return None
    tied = sorted(counts[counts == counts.max()].index)
    return tied[(len(tied) - 1) // 2]  # a product grid: the middle value (the paper's B=128, eta=0.05)


def grad_cov(traces_df: pd.DataFrame, metrics: Sequence[str] | None = None,
             facet: str | Sequence[str] | None = None) -> plt.Figure:
    """Jastrzebski et al. Figure 4: the gradient covariance's top eigenvalue lambda_1^K (and Tr K) along
    training, (a) for several lrs at one batch size and (b) several batch sizes at one lr, and the
    maximum along the trajectory (c) against the lr and (d) against the batch size. Conjecture 1:
    a larger lr or a smaller batch size reaches a lower maximum (the break-even point comes earlier)."""
    if traces_df.empty:
        raise ConfigError("no traces in this sweep (no trace.parquet files yet)")
    if metrics is None:
        metrics = [m for m in ("grad_cov_top", "grad_cov_trace") if m in traces_df and traces_df[m].notna().any()]
        if not metrics:
            raise ConfigError("grad_cov: no grad_cov_top / grad_cov_trace in the traces "
                              "(switch the probe on: probe.grad_cov=N examples)")
    for m in metrics:
        _require(traces_df, (m,), "grad_cov")
    facet_cols = _facets(traces_df, facet, exclude=("batch_size", "target_lr"))
    if facet_cols:
        traces_df = base.facet_groups(traces_df, facet_cols)[0][1]  # one figure per facet value: the first
    df = _first_seed(traces_df)
    df = df.assign(_lr=_log2_round(df["target_lr"]), _b=df["batch_size"].map(_batch_key))
    ref_b = _reference(df["_b"], df["_lr"])
    ref_lr = _reference(df["_lr"], df["_b"])
    lrs = sorted(df["_lr"].unique())
    bs = sorted(df["_b"].unique())
    lr_colour, b_colour = _colours(lrs), {b: plt.get_cmap("viridis")(0.9 * i / max(1, len(bs) - 1))
                                          for i, b in enumerate(bs)}
    fig, axes = plt.subplots(len(metrics), 4, figsize=(17, 3.6 * len(metrics) + 0.6), layout="constrained",
                             squeeze=False)
    for metric, (ax_lr, ax_b, ax_mlr, ax_mb) in zip(metrics, axes):
        table = grad_cov_table(df, metric).assign(
            _lr=lambda t: _log2_round(t["target_lr"]), _b=lambda t: t["batch_size"].map(_batch_key))
        for ax, gid in ((ax_lr, "vs_step_lr"), (ax_b, "vs_step_batch"), (ax_mlr, "max_vs_lr"), (ax_mb, "max_vs_batch")):
            ax.set_gid(f"gradcov:{metric}:{gid}")
        for _, run in sorted(_runs(df[df["_b"] == ref_b]), key=lambda kv: kv[1]["_lr"].iloc[0]):
            v = run["_lr"].iloc[0]
            p = _probed(run, metric)
            ax_lr.plot(p["step"], p[metric], color=lr_colour[v], lw=1.3, label=rf"$\eta$={v:.3g}", gid=f"lr:{v:.4g}")
        for _, run in sorted(_runs(df[df["_lr"] == ref_lr]), key=lambda kv: kv[1]["_b"].iloc[0]):
            b = run["_b"].iloc[0]
            p = _probed(run, metric)
            ax_b.plot(p["step"], p[metric], color=b_colour[b], lw=1.3, label=batch_text(run["batch_size"].iloc[0]),
                      gid=f"batch:{batch_text(run['batch_size'].iloc[0])}")
        finite_b = [b for b in bs if b < math.inf]
        full_x = max(finite_b) * 4 if finite_b else 1.0
        for b, line in table.groupby("_b"):
            line = line.sort_values("_lr")
            ax_mlr.plot(line["_lr"], line[f"max_{metric}"], "o-", color=b_colour[b], lw=1.2,
                        label=batch_text(line["batch_size"].iloc[0]), gid=f"max:{batch_text(line['batch_size'].iloc[0])}")
        for v, line in table.groupby("_lr"):
            line = line.sort_values("_b")
            xs = [full_x if b == math.inf else b for b in line["_b"]]
            ax_mb.plot(xs, line[f"max_{metric}"], "s-", color=lr_colour[v], lw=1.2, label=rf"$\eta$={v:.3g}",
                       gid=f"max:lr{v:.4g}")
        label = GRAD_COV_LABELS.get(metric, metric)
        for ax in (ax_lr, ax_b):
            ax.set_xscale("symlog", linthresh=1)
            ax.set_yscale("log")
            ax.set_xlabel("step $t$")
            ax.set_ylabel(label, fontsize=8)
            ax.legend(fontsize=7, loc="best", framealpha=0.8)
        ax_lr.set_title(f"(a) varying η at {batch_text(ref_b if ref_b < math.inf else 0)}", fontsize=10)
        ax_b.set_title(f"(b) varying B at η={ref_lr:.3g}", fontsize=10)
        ax_mlr.set_xscale("log", base=2)
        ax_mlr.set_yscale("log")
        ax_mlr.set_xlabel(r"learning rate $\eta$")
        ax_mlr.set_ylabel(f"max over training of {label}", fontsize=8)
        ax_mlr.set_title("(c) maximum vs η (break-even point)", fontsize=10)
        ax_mlr.legend(fontsize=7, loc="best")
        ax_mb.set_xscale("log", base=2)
        ax_mb.set_yscale("log")
        ax_mb.set_xticks([full_x if b == math.inf else b for b in bs],
                         ["full" if b == math.inf else f"{int(b)}" for b in bs])
        ax_mb.set_xlabel("batch size $B$")
        ax_mb.set_ylabel(f"max over training of {label}", fontsize=8)
        ax_mb.set_title("(d) maximum vs B", fontsize=10)
        ax_mb.legend(fontsize=7, loc="best")
    fig.suptitle("gradient covariance K (λ₁ᴷ its top eigenvalue) along training: larger η or smaller B → "
                 "lower maximum (Jastrzebski et al. Fig. 4, Conjecture 1)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------- Agarwala & Pennington
def noise_kernel_norm(traces_df: pd.DataFrame) -> tuple[pd.Series, str]:
    """(K per trace row, where it came from).

    A recorded noise-kernel column (NOISE_KERNEL_COLUMNS) is used as is. Otherwise K is estimated from
    the NTK trace by Agarwala & Pennington's trace approximation (their Eq. 11, all eta*lambda_i << 2):
        K_tr = (1 - B/D) * eta_t * tr(Theta) / (2 B D)  =  eta_t * ntk_trace / (2 B)  (B << D),
    with `ntk_trace` = tr(Theta)/D = tr(Theta-hat), D = examples x outputs per example: the mean
    squared norm of one output component's gradient, as sweep/diagnostics/ntk.py records it; the
    S-EOS is K = 1. Full batch (B = 0): K = 0."""
    for col in NOISE_KERNEL_COLUMNS:
        if col in traces_df and traces_df[col].notna().any():
            return pd.to_numeric(traces_df[col], errors="coerce"), col
    _require(traces_df, ("ntk_trace", "batch_size", "lr"), "noise_kernel")
    b = pd.to_numeric(traces_df["batch_size"], errors="coerce")
    eta = pd.to_numeric(traces_df["lr"], errors="coerce")
    k = eta * pd.to_numeric(traces_df["ntk_trace"], errors="coerce") / (2.0 * b.where(b > 0))
    return k.where(b > 0, 0.0), "eta_t ntk_trace / (2B)"


def noise_kernel_table(traces_df: pd.DataFrame, window: str = "half") -> pd.DataFrame:
    """Per run: lr, batch size, eta/B, outcome, median K over the second half of the probes (`window=
    'half'`) or all of them ('all'), max K, the final training loss and the fraction of probes above 1."""
    k, _ = noise_kernel_norm(traces_df)
    df = traces_df.assign(_K=k.to_numpy())
    rows = []
    for run_id, run in _runs(df):
        probes = _probed(run, "_K")
        if probes.empty:
            continue
        half = probes[probes["step"] >= probes["step"].max() / 2] if window == "half" else probes
        b = run["batch_size"].iloc[0]
        lr = float(run["target_lr"].iloc[0]) if "target_lr" in run else float(run["lr"].max())
        losses = pd.to_numeric(run["loss"], errors="coerce").dropna() if "loss" in run else pd.Series([], dtype=float)
        rows.append({"run_id": run_id, "target_lr": lr, "batch_size": b,
                     "lr_over_batch": lr / b if b and b > 0 else np.nan,
                     "outcome": run["outcome"].iloc[0] if "outcome" in run else None,
                     "median_K": float(np.median(half["_K"])), "max_K": float(np.max(probes["_K"])),
                     "frac_above_1": float(np.mean(probes["_K"].to_numpy(float) > 1.0)),
                     "final_train_loss": float(losses.iloc[-1]) if len(losses) else np.nan})
    return pd.DataFrame(rows).sort_values(["batch_size", "target_lr"]).reset_index(drop=True)


def noise_kernel(traces_df: pd.DataFrame, batch_size: int | None = None,
                 facet: str | Sequence[str] | None = None) -> plt.Figure:
    """Agarwala & Pennington Figures 3 (right), 5 and 6: (a) the noise kernel norm K against the step for
    several lrs at one (the smallest) batch size, with the stochastic edge of stability K = 1 dashed;
    (b) the median K over the second half of training against eta/B, one line per batch size (K
    depends on eta/B: the lines collapse); (c) the final training loss against that median K (the
    best runs sit below the S-EOS, neither too conservative nor too noisy)."""
    if traces_df.empty:
        raise ConfigError("no traces in this sweep (no trace.parquet files yet)")
    k, source = noise_kernel_norm(traces_df)
    facet_cols = _facets(traces_df, facet, exclude=("batch_size", "target_lr"))
    df = traces_df.assign(_K=k.to_numpy())
    if facet_cols:
        df = base.facet_groups(df, facet_cols)[0][1]
    df = _first_seed(df)
    minibatch = sorted(b for b in df["batch_size"].dropna().unique() if b > 0)
    if not minibatch:
        raise ConfigError("noise_kernel: only full-batch runs (K = 0); sweep batch_size")
    b_ref = minibatch[0] if batch_size is None else batch_size
    table = noise_kernel_table(df.drop(columns=[c for c in NOISE_KERNEL_COLUMNS if c in df]).assign(
        noise_kernel_norm=df["_K"]))
    fig, (ax_t, ax_m, ax_l) = plt.subplots(1, 3, figsize=(15.5, 4.4), layout="constrained")
    ax_t.set_gid("noise:vs_step")
    ax_m.set_gid("noise:median_vs_lr_over_b")
    ax_l.set_gid("noise:loss_vs_median")
    sel = df[df["batch_size"] == b_ref]
    lrs = sorted(_log2_round(sel["target_lr"].unique()))
    colour = _colours(lrs)
    for _, run in sorted(_runs(sel), key=lambda kv: kv[1]["target_lr"].iloc[0]):
        v = float(_log2_round([run["target_lr"].iloc[0]])[0])
        p = _probed(run, "_K")
        if p.empty:
            continue
        ax_t.plot(p["step"], p["_K"], color=colour[v], lw=1.3, label=rf"$\eta$={v:.3g}", gid=f"K:{v:.4g}")
        if "outcome" in run and (run["outcome"] == "diverged").any():
            ax_t.plot(p["step"].tail(1), p["_K"].tail(1), "x", color=colour[v], ms=8, mew=2)
    ax_t.axhline(1.0, color="k", ls="--", lw=1)
    ax_t.set_xscale("symlog", linthresh=1)
    ax_t.set_xlim(left=0)
    ax_t.set_yscale("log")
    ax_t.set_xlabel("step $t$")
    ax_t.set_ylabel(r"noise kernel norm $\mathcal{K}$")
    ax_t.set_title(f"(a) K along training, B={int(b_ref)} (dashed: S-EOS K = 1)", fontsize=10)
    ax_t.legend(fontsize=7, loc="best", framealpha=0.8)
    bcol = {b: plt.get_cmap("viridis")(0.9 * i / max(1, len(minibatch) - 1)) for i, b in enumerate(minibatch)}
    mini = table[table["batch_size"] > 0]
    for b, line in mini.groupby("batch_size"):
        line = line.sort_values("lr_over_batch")
        conv = line["outcome"] != "diverged"
        ax_m.plot(line["lr_over_batch"][conv], line["median_K"][conv], "o-", color=bcol[b], lw=1.2,
                  label=f"B={int(b)}", gid=f"median:B{int(b)}")
        div = line[~conv]
        if len(div):
            ax_m.plot(div["lr_over_batch"], div["max_K"], "x", color=bcol[b], ms=8, mew=2)
        ax_l.plot(line["median_K"][conv], line["final_train_loss"][conv], "o", color=bcol[b], ms=6,
                  label=f"B={int(b)}", gid=f"loss:B{int(b)}")
    ax_m.axhline(1.0, color="k", ls="--", lw=1)
    ax_m.set_xscale("log")
    ax_m.set_yscale("log")
    ax_m.set_xlabel(r"$\eta\,/\,B$")
    ax_m.set_ylabel(r"median $\mathcal{K}$, second half of training")
    ax_m.set_title("(b) median K vs η/B (×: diverged, its max K)", fontsize=10)
    ax_m.legend(fontsize=7, loc="best")
    ax_l.axvline(1.0, color="k", ls="--", lw=1)
    ax_l.set_xscale("log")
    ax_l.set_yscale("log")
    ax_l.set_xlabel(r"median $\mathcal{K}$")
    ax_l.set_ylabel("final training loss")
    ax_l.set_title("(c) final loss vs median K (converged runs)", fontsize=10)
    ax_l.legend(fontsize=7, loc="best")
    fig.suptitle(f"stochastic edge of stability: noise kernel norm K = {source} against K = 1 "
                 "(Agarwala & Pennington Figs. 3, 5, 6)", fontsize=10)
    return fig
