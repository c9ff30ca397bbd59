"""Paper figures as data: which experiments produce a figure, at which scale, and how it is drawn.

Every figure of Kalra & Barkeshli, "Why Warmup the Learning Rate?" (fig1 .. fig31), plus `gilmer2`
and the README `demo`, and the supporting papers' diagnostics figures (`gilmer4`, `gilmer16`,
`jastrzebski4`, `agarwala3`; drawn by sweep/plot_diagnostics.py) is a `Figure`: its experiments (conf/experiment/<name>.yaml, which hold the
*paper* settings of Appendix D and cite it) and the `sweep plot` calls that draw it. Experiments of one
figure share one sweep (results/<sweep>), so panels that are not a product grid (Figure 3's (SP, MSE),
(muP, xent), (SP, xent)) land in one table and one faceted figure.

Two scales:
- `paper`: the experiments exactly as written (Appendix D); sweep results/<figure>.
- `quick`: the same experiments with the figure family's documented reductions (`Scale.overrides`,
  smaller model, data subset, fewer steps, coarser grid) sized for a 2-core laptop CPU in about ten
  minutes; sweep results/<figure>_quick, so the two scales never mix in one table.
Many figures share a family (conf/experiment/family/*.yaml) and so share one quick reduction below.

The overrides a figure's experiment is composed with are, in order (a later one of the same key wins):
experiment=<name>, the scale's reductions, sweep_name=<sweep>[_quick], the user's command-line extras.
`sweep figures NAME` runs (or submits) and plots them; see sweep/commands/figures.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sweep.config import EXECUTION_KEYS, ConfigError

SCALES = ("quick", "paper")


@dataclass(frozen=True)
class PlotCall:
    """One `sweep plot SWEEP_DIR --kind KIND [options]` call."""

    kind: str  # a registered plot kind (sweep/plot_kinds.py)
    options: tuple[str, ...] = ()

    def argv(self, sweep_dir: str, formats: str, extra: tuple[str, ...] = ()) -> list[str]:
        return [sweep_dir, "--kind", self.kind, *self.options, "--format", formats, *extra]


@dataclass(frozen=True)
class Scale:
    """A scale of a figure: overrides applied to every experiment of it, and what they reduce."""

    name: str
    overrides: tuple[str, ...] = ()
    reductions: str = ""  # one line for titles and sidecars, e.g. "FCN-4-256, 5k CIFAR-10, 300 steps"
    minutes: float | None = None  # estimated wall-clock minutes on a 2-core laptop CPU (quick only)
    per_experiment: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (experiment, overrides) after `overrides`

    def for_experiment(self, experiment: str) -> tuple[str, ...]:
        extra = [o for name, group in self.per_experiment if name == experiment for o in group]
        return (*self.overrides, *extra)


PAPER = Scale("paper", (), "Appendix D settings")


@dataclass(frozen=True)
class Figure:
    name: str
    description: str
    experiments: tuple[str, ...]
    plots: tuple[PlotCall, ...] = field(default_factory=tuple)
    quick: Scale | None = None  # None: the figure is already laptop-sized (gilmer2, demo)
    sweep: str | None = None  # results/<sweep>[_quick]; default: the figure's name
    paper: str = ""  # the paper settings in one line (for --list and docs/figures.md)
    source: str = ""  # the title head of a figure of another paper, e.g. "Gilmer et al. 2022 Fig. 4"
    requires: tuple[str, ...] = ()  # config keys (probe switches) the experiments set; see missing()

    def missing(self) -> list[str]:
        """The required config keys this version's schema lacks (a diagnostic not implemented yet)."""
        from sweep import config

        out = []
        for key in self.requires:
            node: object = config.Config()
            for part in key.split("."):
                if not hasattr(node, part):
                    out.append(key)
                    break
                node = getattr(node, part)
        return out

    def check_available(self) -> None:
        missing = self.missing()
        if missing:
            raise ConfigError(f"figure {self.name} needs {', '.join(missing)}, which this version's config "
                              "schema does not have yet (its probe is not implemented)")

    def scale(self, name: str) -> Scale:
        if name not in SCALES:
            raise ConfigError(f"--scale {name}: allowed {', '.join(SCALES)}")
        if name == "quick":
            return self.quick or Scale("quick", (), "already laptop-sized: the paper scale as is")
        return PAPER

    def sweep_name(self, scale: str) -> str:
        base = self.sweep or self.name
        return f"{base}_quick" if scale == "quick" and self.quick is not None else base

    def overrides(self, experiment: str, scale: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
        """The Hydra overrides of one experiment of this figure at this scale, with the user's extras."""
        return merge_overrides([f"experiment={experiment}"], self.scale(scale).for_experiment(experiment),
                               [f"sweep_name={self.sweep_name(scale)}"], list(extra))

    def title(self, scale: str, extra: list[str] | tuple[str, ...] = ()) -> str:
        """First title line of every panel figure: which figure, which scale, which reductions."""
        s = self.scale(scale)
        number = self.name.removeprefix("fig")
        head = self.source or (f"Kalra & Barkeshli Fig. {number}" if number.isdigit() else self.name)
        text = f"{head} · {scale}: {s.reductions}"
        # an extra override of a key the scale sets replaces what the reductions say (model.width=512
        # under "FCN-4-256"): said as such, so the title does not claim the replaced value
        scale_keys = {_key(o) for exp in self.experiments for o in s.for_experiment(exp)}
        shown = shown_overrides(extra)
        replaced = [o for o in shown if _key(o) in scale_keys]
        others = [o for o in shown if _key(o) not in scale_keys]
        if replaced:
            text += f" · except {' '.join(replaced)} (replacing the {scale} values above)"
        if others:
            text += " · extra overrides: " + " ".join(others)
        return text


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


PATH_KEYS = ("data.path", "data.train", "data.test", "data.root")


def shown_overrides(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """The science overrides as a title shows them: a data file by its name, not one machine's
    folder (data.path=/home/me/data/cifar10_subset.npz -> data.path=cifar10_subset.npz)."""
    out = []
    for o in science_overrides(overrides):
        key, _, value = o.partition("=")
        out.append(f"{key}={Path(value).name or value}" if key.lstrip("+") in PATH_KEYS and value else o)
    return out


def science_overrides(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """The overrides that change what is computed (not where it runs or is written: results_dir, cluster...)."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~").split(".")[0] not in EXECUTION_KEYS]


def merge_overrides(*groups: list[str] | tuple[str, ...]) -> list[str]:
    """Concatenate override lists; of several overrides of one key only the last is kept (in its place),
    so the user's `data.subset=1000` replaces a scale's `data.subset=5000`, and `warmup=1,64` its grid."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            key = override.split("=", 1)[0].lstrip("+~")
            merged.pop(key, None)
            merged[key] = override
    return list(merged.values())


# ----------------------------------------------------------------------------- quick reductions
# One reduction per experiment family. The estimated minutes come from timing short runs of each family
# on a 2-core CPU (see docs/figures.md) and are recorded per figure below; for the WRN-16-1 and
# Transformer figures, from their full quick runs on the 2-core CPU (2026-12-05; fig15, fig16,
# fig3_wrn and fig4 re-measured 2026-12-06).
_CIFAR_QUICK = ("data.subset=5000",)  # the quick CIFAR-10 data; `data=npz data.path=F` replaces the source

FCN_GD_QUICK = (  # full-batch GD on 5k CIFAR-10 (Figures 1, 9, 12)
    "model.width=256", *_CIFAR_QUICK, "steps=300", "warmup=1,16,64", "probe.dtype=float32",
    "probe.batch_size=1000", "probe.dense_steps=48", "probe.every=12")
FCN_GD_QUICK_TEXT = "FCN-4-256, 5k CIFAR-10, 300 steps, T_wrm 1,16,64, float32 sharpness on 1k examples"

FCN_SGD_QUICK = (  # SGD / Adam with B=512 or full-batch Adam on all of CIFAR-10 (Figures 2, 6-8, 10, 11, 13, 14, 30)
    "model.width=256", *_CIFAR_QUICK, "steps=300", "warmup=1,16,64", "probe.dtype=float32",
    "probe.batch_size=1000", "probe.dense_steps=48", "probe.every=12")
FCN_SGD_QUICK_BASE_TEXT = "FCN-4-256, 5k CIFAR-10 (not 50k), 300 steps, T_wrm 1,16,64"
FCN_SGD_QUICK_TEXT = FCN_SGD_QUICK_BASE_TEXT + ", float32 sharpness on 1k examples"

# Full-batch Adam probes two Lanczos runs (sharpness and P^-1 H) per member: on the 5k batch at every
# early step that alone took > 15 min; the quick scale probes 1k examples, densely for 16 steps.
ADAM_PROBE_QUICK = ("probe.batch_size=1000", "probe.dense_steps=16", "probe.every=25")
ADAM_PROBE_QUICK_TEXT = "float32 sharpness and P^-1 H on 1k of the 5k examples, every step to 16 then every 25"

WRN_TRAJ_QUICK = (  # WRN-16-1 trajectories (Figures 15, 16)
    *_CIFAR_QUICK, "batch_size=128", "steps=80", "warmup=1,16,64",
    "probe.dtype=float32", "probe.batch_size=128", "probe.dense_steps=8", "probe.every=12")
WRN_TRAJ_QUICK_TEXT = ("WRN-16-1, 5k CIFAR-10, B=128, 80 steps, T_wrm 1,16,64, float32 sharpness on 128 examples "
                       "(every step to 8, then every 12)")

# Phase diagrams and T_reach on a CPU: a WRN step (and its XLA compile) does not fit a ten-minute
# budget on two cores, so the quick scale swaps the WRN for FCN-4-256 (the paper: "similar phase
# diagrams are generically observed for different architectures", Figure 3's caption) and keeps the
# rest of the experiment (data, loss, optimizer, batch size, lr units, warmup axis).
_FCN_FOR_WRN = ("model=fcn", "model.width=256", *_CIFAR_QUICK, "data.augment.mixup=0.0")
WRN_PHASE_QUICK = (  # WRN-16-4 SGD phase diagrams (Figures 3, 19, 21)
    *_FCN_FOR_WRN, "steps=400", "lr=pow2(0,7)", "warmup=1,16,128", "extend.until_divergence=false",
    "probe.every=100")
WRN_PHASE_QUICK_TEXT = ("FCN-4-256 instead of WRN-16-4, 5k subset, 400 steps, lr 2^0..2^7/lambda0 (fixed), "
                        "T_wrm 1,16,128, no mixup")

# Figure 3's SP/MSE panel with a real WRN (issue 19): convolutions are fast inside compiled loops
# now (sweep/models/conv.py), so a reduced WRN grid fits a laptop: WRN-16-1, 60 steps, 6 x 3 cells.
WRN_PHASE_REAL_QUICK = ("model.widen=1", *_CIFAR_QUICK, "data.augment.mixup=0.0", "loss=mse", "steps=60",
                        "lr=pow2(1,5)", "warmup=1,8,32", "extend.until_divergence=false", "probe.batch_size=128")
WRN_PHASE_REAL_QUICK_TEXT = ("WRN-16-1 (not 16-4), 5k CIFAR-10, MSE, 60 steps (not 1e5), lr 2^1..2^5/lambda0 (fixed), "
                             "T_wrm 1,8,32, no mixup, lambda0 on 128 examples")

WRN_ADAM_QUICK = (  # WRN-16-4 Adam phase diagrams (Figures 22-24): 2^x * 1e-5, x = 4, 6, .., 14
    *_FCN_FOR_WRN, "steps=400", "lr=pow2(-12.609640474436812,-2.609640474436812,2)", "warmup=1,16,128",
    "extend.until_divergence=false", "probe.every=100")
WRN_ADAM_QUICK_TEXT = ("FCN-4-256 instead of WRN-16-4, 5k subset, 400 steps, lr 2^x*1e-5 for x=4,6,..,14 (fixed), "
                       "T_wrm 1,16,128, no mixup")

TREACH_QUICK = (  # T_reach / T_save (Figures 5, 27): eta_c search + a short run
    *_FCN_FOR_WRN, "steps=300", "lr=pow2(0,6,2)", "warmup=16,64,256", "extend.until_divergence=false",
    "probe.every=100")
TREACH_QUICK_TEXT = "FCN-4-256 instead of WRN-16-4, 5k subset, 300 steps, lr 2^0,2^2,2^4,2^6/lambda0, T_wrm 16,64,256"
TREACH_ADAM_QUICK = (*TREACH_QUICK, "lr=pow2(-12.609640474436812,-4.609640474436812,4)")
TREACH_ADAM_QUICK_TEXT = ("FCN-4-256 instead of WRN-16-4, 5k subset, 300 steps, lr 2^x*1e-5 for x=4,8,12, "
                          "T_wrm 16,64,256")

LM_WIKITEXT_QUICK = ("model.depth=2", "model.width=64", "model.heads=2", "model.context=32", "data.context=32",
                     "data.subset=2000")
LM_PHASE_QUICK = (*LM_WIKITEXT_QUICK, "batch_size=32", "steps=200", "warmup=1,8,64", "extend.until_divergence=false",
                  "probe.every=100")
LM_PHASE_QUICK_TEXT = "LM-2-64, context 32, 2000 WikiText-2 windows, B=32, 200 steps, T_wrm 1,8,64"
# The probes are most of an LM trajectory figure's time (256 windows, every step to 32: 60 min for
# fig17), so 128 windows, every step to 16, then every 12.
LM_TRAJ_QUICK = (*LM_WIKITEXT_QUICK, "batch_size=64", "steps=200", "warmup=1,16,64", "probe.dtype=float32",
                 "probe.batch_size=128", "probe.dense_steps=16", "probe.every=12")
LM_TRAJ_QUICK_TEXT = ("LM-2-64, context 32, 2000 WikiText-2 windows, B=64, 200 steps, T_wrm 1,16,64, "
                      "float32 sharpness on 128 windows (every step to 16, then every 12)")
# Adam probes two curvatures (sharpness and preconditioned sharpness), so fewer, smaller probes keep it near 30 min.
LM_ADAM_TRAJ_QUICK = (*LM_TRAJ_QUICK, "probe.batch_size=128", "probe.dense_steps=8", "probe.every=25")
LM_ADAM_TRAJ_QUICK_TEXT = ("LM-2-64, context 32, 2000 WikiText-2 windows, B=64, 200 steps, T_wrm 1,16,64, "
                           "float32 sharpness on 128 windows, every step to 8 then every 25")


def _quick(overrides: tuple[str, ...], text: str, minutes: float, *more: str, note: str = "",
           per_experiment: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> Scale:
    return Scale("quick", (*overrides, *more), text + (f", {note}" if note else ""), minutes, per_experiment)


def _traj(facet: str) -> tuple[PlotCall, ...]:
    return (PlotCall("trajectories", ("--facet", facet)),)


def _heat(metric: str, facet: str) -> tuple[PlotCall, ...]:
    return (PlotCall("heatmap", ("--metric", metric, "--facet", facet)),)


# The supporting papers' figures (sweep/plot_diagnostics.py). The quick scales swap the paper's
# architectures for FCNs on the 5k CIFAR-10 subset, as the phase-diagram families do.
GILMER4_QUICK = (
    "model=fcn", "model.width=256", *_CIFAR_QUICK, "data.augment.flip=false", "data.augment.crop=0",
    "loss=mse", "lr_unit=sharpness", "lr=32", "optimizer.momentum=0.0", "batch_size=512", "decay=none",
    "steps=300", "warmup=1,16,64,256", "probe.dtype=float32", "probe.batch_size=1000", "probe.dense_steps=32",
    "probe.every=8")
GILMER4_QUICK_TEXT = ("FCN-4-256 SP instead of WRN, 5k CIFAR-10, MSE, SGD B=512 (no momentum, no decay), "
                      "peak 32/lambda0, 300 steps, T_wrm 1,16,64,256, sharpness on 1k examples")
GILMER16_QUICK = (
    "model=fcn", "model.width=256", *_CIFAR_QUICK, "data.augment.flip=false", "data.augment.crop=0",
    "loss=mse", "lr_unit=sharpness", "lr=8", "optimizer.momentum=0.0", "decay=none", "warmup=64",
    "steps=300", "batch_size=32,128,512,0", "probe.dtype=float32", "probe.batch_size=1000", "probe.every=10")
GILMER16_QUICK_TEXT = ("FCN-4-256 SP instead of WRN, 5k CIFAR-10, MSE, SGD (no momentum, no decay), "
                       "8/lambda0, T_wrm 64, 300 steps, B 32,128,512,full, sharpness on 1k examples")
JASTRZEBSKI4_QUICK = (
    "model=fcn", "model.width=256", *_CIFAR_QUICK, "data.augment.flip=false", "data.augment.crop=0",
    "steps=300", "lr=0.01,0.04,0.16", "batch_size=16,128,512", "probe.grad_cov=128", "probe.every=10")
JASTRZEBSKI4_QUICK_TEXT = ("FCN-4-256 SP instead of WRN, 5k CIFAR-10, SGD, 300 steps, lr 0.01,0.04,0.16 x "
                           "B 16,128,512, K from 128 per-example gradients every 10 steps")
AGARWALA3_QUICK = (
    "model.width=256", "steps=400", "lr=pow2(-4,2,2)", "batch_size=8,32", "probe.ntk_trace=128",
    "probe.batch_size=1000", "probe.every=20")
AGARWALA3_QUICK_TEXT = ("FCN-3-256, 5k CIFAR-10, MSE, SGD B 8,32, 400 steps, lr 2^-4..2^2/lambda0 (every 2nd), "
                        "NTK trace of 128 examples every 20 steps")

_TREACH = (PlotCall("treach", ("--facet", "")), PlotCall("heatmap", ("--metric", "best_test_acc", "--facet", "")))

_FIGURES = (
    # ------------------------------------------------------------------ Section 4: mechanisms (trajectories)
    Figure("fig1", "FCN GD trajectories: muP at 1/lambda0 sharpens progressively, SP at 32/lambda0 catapults "
           "and reduces sharpness; warmup delays and softens the catapults",
           ("fig1_mup", "fig1_sp"), _traj("param"),
           _quick(FCN_GD_QUICK, FCN_GD_QUICK_TEXT, 9),
           paper="FCN-4-512, 5k CIFAR-10, MSE, GD, muP 1/lambda0 & SP 32/lambda0, 2000 steps, T_wrm 1,64,256,1024"),
    Figure("fig2", "FCN full-batch Adam: preconditioned sharpness starts high and falls; catapults when it "
           "crosses (2+2b1)/(eta(1-b1))",
           ("fig2_mup", "fig2_sp"), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_BASE_TEXT, 24, *ADAM_PROBE_QUICK, note=ADAM_PROBE_QUICK_TEXT),
           paper="FCN-4-512, CIFAR-10 (aug.), MSE, full-batch Adam, simple-muP 0.003 & SP 0.001, 2000 steps"),
    Figure("fig3", "WRN SGD phase diagrams (best test accuracy): warmup pushes the divergence boundary to larger "
           "eta_trgt, most for SP and MSE",
           ("fig3_sp", "fig3_mup"), _heat("best_test_acc", "param,loss"),
           _quick(WRN_PHASE_QUICK, WRN_PHASE_QUICK_TEXT, 20, note="3 panels, 3 compiled cohorts"),
           paper="WRN-16-4, CIFAR-10 (aug.), SGD B=128, 1e5 steps, (SP,MSE) (muP,xent) (SP,xent), "
                 "2^x/lambda0 until divergence x T_wrm 4^0..4^6"),
    Figure("fig3_wrn", "Figure 3's (SP, MSE) panel drawn from real WideResNet runs: warmup pushes the divergence "
           "boundary to larger eta_trgt",
           ("fig3_sp",), _heat("best_test_acc", "param,loss"),
           _quick(WRN_PHASE_REAL_QUICK, WRN_PHASE_REAL_QUICK_TEXT, 10),
           paper="as Figure 3's (SP, MSE) panel: WRN-16-4, CIFAR-10 (aug.), SGD B=128, 1e5 steps"),
    Figure("fig4", "LM Adam vs GI-Adam phase diagrams (final test loss): GI-Adam pushes the failure boundary",
           ("fig4",), _heat("final_test_loss", "optimizer"),
           _quick(LM_PHASE_QUICK, LM_PHASE_QUICK_TEXT, 21, "lr=pow2(-13.287712379549449,-3.287712379549449,2)",
                  note="lr 1e-4*2^x, x=0,2,..,10"),
           paper="Pre-LN LM-4-128 ctx 64, WikiText-2, B=64, cosine decay, 1e4 steps, 1e-4*2^(x/2) until failure "
                 "x T_wrm 4^0..4^6"),
    Figure("fig5", "T_reach and T_save when warmup starts at eta_init = eta_c (WRN SP, SGD)",
           ("fig5",), _TREACH,
           _quick(TREACH_QUICK, TREACH_QUICK_TEXT, 1.5),
           paper="WRN-16-4 SP, CIFAR-10, xent, SGD B=128, 1e4 steps, eta_0 = eta_trgt/T_wrm, delta 0.1"),
    Figure("fig6", "GI-Adam (SP): lower initial preconditioned sharpness, no early spike (Figure 2 with GI-Adam)",
           ("fig30_sp",), _traj(""),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_BASE_TEXT, 11, *ADAM_PROBE_QUICK, note=ADAM_PROBE_QUICK_TEXT),
           paper="as Figure 2 (SP, eta 0.001) with GI-Adam"),
    Figure("fig7", "Persistent catapult warmup (Algorithm 3) vs linear warmups (FCN SP, SGD B=512)",
           ("fig7_linear", "fig7_catapult"), _traj("warmup_mode"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_TEXT, 6, per_experiment=(("fig7_catapult", ("warmup=1",)),)),
           paper="FCN-4-512 SP 32/lambda0, all CIFAR-10, MSE, SGD B=512, 2000 steps; catapult delta 0.1"),
    # ------------------------------------------------------------------ Appendix E: more mechanisms
    Figure("fig8", "FCN SGD (B=512) trajectories: the GD mechanisms survive minibatches",
           ("fig8_mup", "fig8_sp"), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_TEXT, 6),
           paper="FCN-4-512, all CIFAR-10, MSE, SGD B=512, muP 1/lambda0 & SP 32/lambda0, 2000 steps"),
    Figure("fig9", "FCN GD with momentum 0.9: oscillating loss, threshold from 2/eta to (2+2b)/eta",
           ("fig9_mup", "fig9_sp"), _traj("param,target_lr_over_lambda0"),
           _quick(FCN_GD_QUICK, FCN_GD_QUICK_TEXT, 24),
           paper="FCN-4-512, 5k CIFAR-10, MSE, GD b=0.9, muP 1/lambda0, SP 1/lambda0 & 32/lambda0, 2000 steps"),
    Figure("fig10", "FCN SGD-M (B=512, b=0.9): late sharpness far below (2+2b)/eta",
           ("fig10_mup", "fig10_sp"), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_TEXT, 6),
           paper="FCN-4-512, all CIFAR-10, MSE, SGD B=512 b=0.9, muP 1/lambda0 & SP 32/lambda0, 2000 steps"),
    Figure("fig11", "FCN SGD (B=512) with cross-entropy: same mechanisms, late sharpness drop",
           ("fig11_mup", "fig11_sp"), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_TEXT, 6),
           paper="FCN-4-512, all CIFAR-10, xent, SGD B=512, muP 1/lambda0 & SP 32/lambda0, 2000 steps"),
    Figure("fig12", "FCN SP GD with cross-entropy, momentum 0 vs 0.9",
           ("fig12",), _traj("momentum"),
           _quick(FCN_GD_QUICK, FCN_GD_QUICK_TEXT, 13),
           paper="FCN-4-512 SP, 5k CIFAR-10, xent, GD 32/lambda0, b in {0, 0.9}, 2000 steps"),
    Figure("fig13", "FCN Adam with B=512: preconditioned sharpness far below Adam's threshold late",
           ("fig13",), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_BASE_TEXT + ", float32 sharpness and P^-1 H on 1k examples", 11),
           paper="FCN-4-512 muP & SP, CIFAR-10 (aug.), MSE, Adam 0.001 B=512, 2000 steps"),
    Figure("fig14", "FCN full-batch Adam with cross-entropy",
           ("fig14",), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_BASE_TEXT, 14, *ADAM_PROBE_QUICK, note=ADAM_PROBE_QUICK_TEXT),
           paper="FCN-4-512 muP & SP, CIFAR-10 (aug.), xent, full-batch Adam 0.001, 2000 steps"),
    Figure("fig15", "WRN-16-1 SGD (B=512) trajectories, MSE",
           ("fig15_mup", "fig15_sp"), _traj("param"),
           _quick(WRN_TRAJ_QUICK, WRN_TRAJ_QUICK_TEXT, 28),
           paper="WRN-16-1, CIFAR-10 (aug.), MSE, SGD B=512, muP 1/lambda0 & SP 32/lambda0, 2000 steps"),
    Figure("fig16", "WRN-16-1 SGD (B=512) trajectories, cross-entropy",
           ("fig16_mup", "fig16_sp"), _traj("param"),
           _quick(WRN_TRAJ_QUICK, WRN_TRAJ_QUICK_TEXT, 25),
           paper="WRN-16-1, CIFAR-10 (aug.), xent, SGD B=512, muP 1/lambda0 & SP 32/lambda0, 2000 steps"),
    Figure("fig17", "LM SGD trajectories: Pre-LN sharpens from a flat start; without the last LayerNorm it starts "
           "~100x sharper and reduces sharpness",
           ("fig17_pre_ln", "fig17_no_final_ln"), _traj("model.norm"),
           _quick(LM_TRAJ_QUICK, LM_TRAJ_QUICK_TEXT, 30),
           paper="LM-4-128 ctx 64, WikiText-2, SGD B=512, Pre-LN 5.65/lambda0, no final LN 8/lambda0, 2000 steps"),
    Figure("fig18", "LM Adam trajectories: preconditioned sharpness falls early despite a flat start",
           ("fig18",), _traj(""),
           _quick(LM_ADAM_TRAJ_QUICK, LM_ADAM_TRAJ_QUICK_TEXT, 12),
           paper="Pre-LN LM-4-128 ctx 64, WikiText-2, Adam 0.003 B=512, 2000 steps"),
    # ------------------------------------------------------------------ Appendix F: more phase diagrams
    Figure("fig19", "WRN SGD phase diagrams on CIFAR-100 and Tiny-ImageNet",
           ("fig19_cifar100", "fig19_tiny_imagenet"), _heat("best_test_acc", "data"),
           _quick(WRN_PHASE_QUICK, WRN_PHASE_QUICK_TEXT, 14, note="5k of each data set"),
           paper="WRN-16-4 SP, xent, SGD B=128, 1e5 steps, 2^x/lambda0 until divergence x T_wrm 4^0..4^6"),
    Figure("fig20", "LM SGD phase diagrams (final test loss): Pre-LN vs no last LayerNorm (needs warmup)",
           ("fig20",), _heat("final_test_loss", "model.norm"),
           _quick(LM_PHASE_QUICK, LM_PHASE_QUICK_TEXT, 23, "lr=pow2(0,4,2)", note="lr 2^0,2^2,2^4/lambda0"),
           paper="LM-4-128 ctx 64, WikiText-2, SGD B=64, 1e4 steps, 2^x/lambda0 until divergence x T_wrm 4^0..4^6"),
    Figure("fig21", "WRN SGD phase diagrams with momentum and/or cosine decay",
           ("fig21",), _heat("best_test_acc", "momentum,decay"),
           _quick(WRN_PHASE_QUICK, WRN_PHASE_QUICK_TEXT, 11, note="4 panels, 4 compiled cohorts"),
           paper="WRN-16-4 SP, CIFAR-10, xent, SGD B=128, b in {0,0.9} x {none, cosine}, 1e5 steps"),
    Figure("fig22", "WRN Adam vs GI-Adam phase diagrams on CIFAR-10 (caption printed as CIFAR-100)",
           ("fig22",), _heat("best_test_acc", "optimizer"),
           _quick(WRN_ADAM_QUICK, WRN_ADAM_QUICK_TEXT, 7),
           paper="WRN-16-4 SP, CIFAR-10, xent, B=128, 1e5 steps, 2^x*1e-5 until failure x T_wrm 4^0..4^6"),
    Figure("fig23", "WRN Adam vs GI-Adam phase diagrams on CIFAR-100",
           ("fig23",), _heat("best_test_acc", "optimizer"),
           _quick(WRN_ADAM_QUICK, WRN_ADAM_QUICK_TEXT, 14, note="5k CIFAR-100"),
           paper="WRN-16-4 SP, CIFAR-100, xent, B=128, 1e5 steps, 2^x*1e-5 until failure x T_wrm 4^0..4^6"),
    Figure("fig24", "WRN Adam vs GI-Adam phase diagrams on Tiny-ImageNet",
           ("fig24",), _heat("best_test_acc", "optimizer"),
           _quick(WRN_ADAM_QUICK, WRN_ADAM_QUICK_TEXT, 20, note="5k Tiny-ImageNet (64x64)"),
           paper="WRN-16-4 SP, Tiny-ImageNet, xent, B=128, 1e5 steps, 2^x*1e-5 until failure x T_wrm 4^0..4^6"),
    Figure("fig25", "LM Adam vs GI-Adam phase diagrams (= Figure 4, B=64; shares its runs)",
           ("fig4",), _heat("final_test_loss", "optimizer"),
           _quick(LM_PHASE_QUICK, LM_PHASE_QUICK_TEXT, 21, "lr=pow2(-13.287712379549449,-3.287712379549449,2)",
                  note="lr 1e-4*2^x, x=0,2,..,10"),
           sweep="fig4", paper="as Figure 4"),
    # ------------------------------------------------------------------ Appendices G-I
    Figure("fig26", "Adam does not diverge: loss spikes and recovers to a failure far beyond the failure boundary",
           ("fig26",), _traj("target_lr"),
           Scale("quick", (*WRN_ADAM_QUICK, "lr=pow2(-6.609640474436812,7.390359525563188,2)", "warmup=1",
                                   "probe.every=10"),
                 "FCN-4-256 instead of WRN-16-4, 5k subset, 400 steps, lr 2^x*1e-5 for x=10,12,..,24, T_wrm 1, no mixup", 3),
           paper="WRN-16-4 SP, CIFAR-10, xent, Adam B=128, T_wrm 1, no decay, 1e5 steps, 2^x*1e-5 x=10..24"),
    Figure("fig27", "T_reach / T_save for WRN muP with SGD: eta_c ~ eta_max, almost the whole warmup saved",
           ("fig27",), _TREACH,
           _quick(TREACH_QUICK, TREACH_QUICK_TEXT, 1.5),
           paper="WRN-16-4 muP, CIFAR-10, xent, SGD B=128, 1e4 steps, eta_0 = eta_trgt/T_wrm, delta 0.1"),
    Figure("fig28", "T_reach / T_save for WRN SP with Adam",
           ("fig28",), _TREACH,
           _quick(TREACH_ADAM_QUICK, TREACH_ADAM_QUICK_TEXT, 1.5),
           paper="WRN-16-4 SP, CIFAR-10, xent, Adam B=128, 1e4 steps, 2^x*1e-5, delta 0.1"),
    Figure("fig29", "T_reach / T_save for WRN muP with Adam",
           ("fig29",), _TREACH,
           _quick(TREACH_ADAM_QUICK, TREACH_ADAM_QUICK_TEXT, 1.5),
           paper="WRN-16-4 muP (per-layer Adam lrs), CIFAR-10, xent, Adam B=128, 1e4 steps, 2^x*1e-5, delta 0.1"),
    Figure("fig30", "GI-Adam trajectories (muP and SP): initial preconditioned sharpness ~sqrt(1-b2) of Adam's",
           ("fig30_mup", "fig30_sp"), _traj("param"),
           _quick(FCN_SGD_QUICK, FCN_SGD_QUICK_BASE_TEXT, 16, *ADAM_PROBE_QUICK, note=ADAM_PROBE_QUICK_TEXT),
           paper="as Figure 2 (simple-muP 0.003, SP 0.001) with GI-Adam"),
    Figure("fig31", "Adam variants (Adam, Adam + T_wrm=1024, GI-Adam, RI-Adam) at eta 0.02048 and 0.04096: "
           "test accuracy",
           ("fig31",),
           (PlotCall("trajectories", ("--facet", "optimizer,target_lr", "--metric", "test_acc")),
            PlotCall("heatmap", ("--metric", "best_test_acc", "--facet", "optimizer"))),
           Scale("quick", (*WRN_ADAM_QUICK, "lr=0.02048,0.04096", "warmup=1,64", "probe.every=10",
                           "probe.eval_every=10"),
                 "FCN-4-256 instead of WRN-16-4, 5k subset, 400 steps, lr 0.02048, 0.04096, T_wrm 1,64 (not 1024), "
                 "test accuracy every 10 steps, no mixup", 3),
           paper="WRN-16-4 SP, CIFAR-10, xent, B=128, 1e5 steps, Adam T_wrm 1 & 1024, GI-Adam, RI-Adam; "
                 "eta 0.02048, 0.04096"),
    # ------------------------------------------------------------------ not in the paper
    Figure("gilmer2", "Gilmer et al. Fig. 2 style: sharpness at init and later vs lr, X = diverged "
           "(FCN on digits, default and 2x init)",
           ("gilmer2",), (PlotCall("scatter", ("--facet", "param.init_scale")),),
           paper="FCN-4-256 on digits, MSE, SGD B=128, 300 steps (laptop-sized)"),
    Figure("gilmer4", "Gilmer et al. Figs. 4/15: warmup pushes the trajectory to flatter regions; lambda_1 "
           "tracks 2/eta_t during warmup, no warmup diverges",
           ("gilmer4",), (PlotCall("warmup_push", ("--facet", "")),),
           _quick(GILMER4_QUICK, GILMER4_QUICK_TEXT, 5),
           paper="WRN-16-4 (LayerNorm; theirs: WRN-28-10 w/o BN), CIFAR-10, xent, SGD-M 0.9 B=2048, peak 0.1, "
                 "cosine, 7324 steps, T_wrm 1,100,1000,4000",
           source="Gilmer et al. 2022 Figs. 4, 15"),
    Figure("gilmer16", "Gilmer et al. Fig. 16: mid-training sharpness sits below 2/eta at small batch size and "
           "approaches it as the batch grows",
           ("gilmer16",), (PlotCall("batch_sharpness", ("--facet", "")),),
           _quick(GILMER16_QUICK, GILMER16_QUICK_TEXT, 6),
           paper="WRN-16-4 (LayerNorm), CIFAR-10, xent, SGD-M 0.9, peak 0.1, T_wrm 1000, cosine, 7324 steps, "
                 "B 32,128,512,2048",
           source="Gilmer et al. 2022 Fig. 16"),
    Figure("jastrzebski4", "Jastrzebski et al. 2020 Fig. 4: larger lr or smaller batch -> lower maximum of "
           "lambda_1^K (and Tr K) along training (break-even point)",
           ("jastrzebski4",), (PlotCall("grad_cov", ("--facet", "")),),
           _quick(JASTRZEBSKI4_QUICK, JASTRZEBSKI4_QUICK_TEXT, 6),
           paper="WRN-16-4 (theirs: SimpleCNN / ResNet-32), CIFAR-10, xent, SGD, lr 0.01,0.05,0.1 x B 10,100,128, "
                 "20000 steps, K from 128 per-example gradients",
           source="Jastrzebski et al. 2020 Fig. 4", requires=("probe.grad_cov",)),
    Figure("agarwala3", "Agarwala & Pennington 2024 Figs. 3, 5: noise kernel norm K (NTK trace) against the "
           "stochastic edge of stability K = 1 over lr and batch size",
           ("agarwala3",), (PlotCall("noise_kernel", ("--facet", "")),),
           _quick(AGARWALA3_QUICK, AGARWALA3_QUICK_TEXT, 6),
           paper="FCN-3-512 (theirs: 2 hidden layers on MNIST), 5k CIFAR-10, MSE, SGD B 8,32,128, 20000 steps, "
                 "lr 2^-4..2^2/lambda0, NTK trace of 256 examples",
           source="Agarwala & Pennington 2024 Figs. 3, 5", requires=("probe.ntk_trace",)),
    Figure("demo", "The README demo: FCN on digits, SP and muP, phase diagram and trajectories",
           ("demo",), (PlotCall("heatmap"), PlotCall("trajectories")),
           paper="FCN-4-256 on digits, SGD B=128, 300 steps (laptop-sized)"),
)
FIGURES: dict[str, Figure] = {f.name: f for f in _FIGURES}


def get_figure(name: str) -> Figure:
    if name not in FIGURES:
        raise ConfigError(f"unknown figure '{name}'; available: {', '.join(FIGURES)}")
    return FIGURES[name]
