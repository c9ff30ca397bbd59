"""Paper figures as data: which experiment configs produce a figure and which `sweep plot` calls draw it.

Each figure names one or more experiments (conf/experiment/<name>.yaml); experiments of one figure may
share a sweep (the same `sweep_name`), so that different grids, e.g. Figure 3's (SP, MSE), (muP, xent),
(SP, xent) panels, which are not a product grid, land in one table and one faceted figure.
`sweep figures NAME` composes, runs (or submits) and plots them; see sweep/commands/figures.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sweep.config import ConfigError


@dataclass(frozen=True)
class PlotCall:
    """One `sweep plot SWEEP_DIR --kind KIND [options]` call."""

    kind: str  # heatmap | trajectories | treach | scatter
    options: tuple[str, ...] = ()

    def argv(self, sweep_dir: str, formats: str) -> list[str]:
        return [sweep_dir, "--kind", self.kind, *self.options, "--format", formats]


@dataclass(frozen=True)
class Figure:
    name: str
    description: str
    experiments: tuple[str, ...]
    plots: tuple[PlotCall, ...] = field(default_factory=tuple)


_FIGURES = (
    Figure("fig1", "Kalra & Barkeshli Fig. 1: FCN-4-512, 5k CIFAR-10, MSE, GD; muP at 1/lambda0 and SP at "
           "32/lambda0; loss and sharpness trajectories for several warmups",
           ("fig1_mup", "fig1_sp"), (PlotCall("trajectories", ("--facet", "param")),)),
    Figure("fig3", "Kalra & Barkeshli Fig. 3: WRN-16-4 CIFAR-10, SGD B=128, test-accuracy phase diagrams "
           "(SP, MSE), (muP, xent), (SP, xent)",
           ("fig3_sp", "fig3_mup"),
           (PlotCall("heatmap", ("--metric", "best_test_acc", "--facet", "param,loss")),)),
    Figure("fig4", "Kalra & Barkeshli Fig. 4: Pre-LN LM-4-128 WikiText-2, Adam vs GI-Adam, cosine decay, "
           "test-loss phase diagrams",
           ("fig4",), (PlotCall("heatmap", ("--metric", "final_test_loss", "--facet", "optimizer")),)),
    Figure("fig5", "Kalra & Barkeshli Fig. 5: T_reach and T_save with eta_init = eta_c, WRN-16-4 SP xent "
           "SGD B=128, 1e4 steps",
           ("fig5",),
           # eta_c (hence lr_init) differs per run: no facets, one panel pair
           (PlotCall("treach", ("--facet", "")),
            PlotCall("heatmap", ("--metric", "best_test_acc", "--facet", "")))),
    Figure("gilmer2", "Gilmer et al. Fig. 2 style: sharpness at init and later vs lr, X = diverged "
           "(FCN on digits, default and 2x init)",
           ("gilmer2",), (PlotCall("scatter", ("--facet", "param.init_scale")),)),
    Figure("demo", "The README demo: FCN on digits, SP and muP, phase diagram and trajectories",
           ("demo",), (PlotCall("heatmap"), PlotCall("trajectories"))),
)
FIGURES: dict[str, Figure] = {f.name: f for f in _FIGURES}


def get_figure(name: str) -> Figure:
    if name not in FIGURES:
        raise ConfigError(f"unknown figure '{name}'; available: {', '.join(FIGURES)}")
    return FIGURES[name]
