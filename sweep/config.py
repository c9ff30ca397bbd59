"""Structured configs: the schema of every key a user can set or sweep.

The dataclasses are registered in Hydra's ConfigStore so a typo, a wrong type or an
unknown group option fails at composition, before any compute. Value checks that a type
cannot express (negative learning rate, warmup 0) live in `validate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from sweep import optimizers
from sweep.errors import ConfigError  # noqa: F401  (raised here; importable from here as before)
from sweep.optimizers import (AdamConfig, GIAdamConfig, OptimizerConfig, RIAdamConfig,  # noqa: F401 - re-exported
                              SGDConfig)


def added(default: Any) -> Any:
    """A schema key added after run ids froze (see sweep/identity.py): at `default` a run hashes as
    if the key did not exist, so adding a switch that is off by default keeps every finished run."""
    return field(default=default, metadata={"neutral": default})


def added_keys(schema: Any = None, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> neutral value of every `added(...)` field of the schema (nested dataclasses)."""
    import dataclasses
    import typing

    schema = Config if schema is None else schema
    hints = typing.get_type_hints(schema)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        if "neutral" in f.metadata:
            out[prefix + f.name] = f.metadata["neutral"]
        sub = hints.get(f.name)
        if dataclasses.is_dataclass(sub):
            out.update(added_keys(sub, prefix + f.name + "."))
    return out




class Loss(str, Enum):
    mse = "mse"
    xent = "xent"


class Decay(str, Enum):
    none = "none"
    cosine = "cosine"


class LrUnit(str, Enum):
    absolute = "absolute"
    sharpness = "sharpness"


# ----------------------------------------------------------------------------- models
@dataclass
class ModelConfig:
    name: str = MISSING

    @staticmethod
    def checks(cfg: Any) -> list[tuple[bool, str]]:
        """(ok, one-line message) of this model's keys (config.validate runs them)."""
        return []


@dataclass
class FCNConfig(ModelConfig):
    """FCN-d-n: `depth` dense layers (the last is the readout), hidden width `width`."""

    name: str = "fcn"
    depth: int = 4
    width: int = 512
    activation: str = "relu"
    use_bias: bool = True

    @staticmethod
    def checks(cfg: Any) -> list[tuple[bool, str]]:
        m = cfg.model
        return [(m.depth >= 1, f"model.depth={m.depth}: must be >= 1"),
                (m.width >= 1, f"model.width={m.width}: must be >= 1"),
                (m.activation in ("relu", "tanh", "linear", "gelu"),
                 f"model.activation={m.activation}: allowed relu, tanh, gelu, linear")]


@dataclass
class WRNConfig(ModelConfig):
    """WRN-d-k with LayerNorm; depth = 6 * blocks_per_stage + 4."""

    name: str = "wrn"
    depth: int = 16
    widen: int = 4
    stem_channels: int = 16
    activation: str = "relu"

    @staticmethod
    def checks(cfg: Any) -> list[tuple[bool, str]]:
        m = cfg.model
        return [*((m[key] >= 1, f"model.{key}={m[key]}: must be >= 1") for key in ("widen", "stem_channels")),
                ((m.depth - 4) % 6 == 0 and m.depth >= 10,
                 f"model.depth={m.depth}: a WRN depth is 6*n+4 (10, 16, 22, 28, ...)")]


@dataclass
class TransformerConfig(ModelConfig):
    """LM-d-n: GPT-2 style decoder, `depth` blocks, embedding `width`."""

    name: str = "transformer"
    depth: int = 4
    width: int = 128
    heads: int = 4
    context: int = 64
    norm: str = "pre_ln"  # pre_ln | post_ln | pre_ln_no_final
    mlp_ratio: int = 4

    @staticmethod
    def checks(cfg: Any) -> list[tuple[bool, str]]:
        m = cfg.model
        out = [(m[key] >= 1, f"model.{key}={m[key]}: must be >= 1")
               for key in ("depth", "width", "heads", "context", "mlp_ratio")]
        out += [(m.norm in ("pre_ln", "post_ln", "pre_ln_no_final"),
                 f"model.norm={m.norm}: allowed pre_ln, post_ln, pre_ln_no_final"),
                (m.heads < 1 or m.width % m.heads == 0, f"model.width={m.width} is not divisible by model.heads={m.heads}")]
        if cfg.data.name in ("wikitext2", "text"):
            out.append((m.context == cfg.data.context,
                        f"model.context={m.context} != data.context={cfg.data.context}: set both to the same length"))
        return out


# ----------------------------------------------------------------------------- parameterization
@dataclass
class ParamConfig:
    """SP or muP (Appendix D.2.1); `init_scale` multiplies every weight (Gilmer et al.'s alpha)."""

    name: str = "sp"
    sigma_w2: float = 2.0
    sigma_w2_last: float = 1.0
    init_scale: float = 1.0
    # exact: truncated normal rescaled to variance sigma^2/fan_in (the authors' code:
    # variance_scaling(..., "truncated_normal")); jax: sigma is the untruncated normal's std
    # (jax.nn.initializers.truncated_normal; variance 0.774 sigma^2/fan_in)
    truncation: str = "exact"
    # muP + Adam: per-layer learning-rate factors of Appendix D.2.1; False = "simple-muP".
    adam_lr_factors: bool = False


# ----------------------------------------------------------------------------- optimizers
# Optimizer schemas live with their specs (sweep/optimizers.py), re-exported here.


# ----------------------------------------------------------------------------- data
@dataclass
class AugmentConfig:
    flip: bool = False
    crop: int = 0  # padding in pixels for random crops (the paper uses 4); 0 = off
    mixup: float = 0.0  # Beta(alpha, alpha) mixing; 0 = off


@dataclass
class DataConfig:
    name: str = MISSING
    subset: int = 0  # keep the first `subset` training examples (0 = all), class-balanced order
    # per_image: each example minus its own mean over pixels and channels, divided by its own std
    # (the authors' code); per_channel: the training set's per-channel mean and std
    standardize: str = "per_image"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class DigitsConfig(DataConfig):
    """scikit-learn's bundled 8x8 digits: real images, no download; fixed 80/20 split."""

    name: str = "digits"
    test_fraction: float = 0.2


@dataclass
class NpzConfig(DataConfig):
    """Any .npz with x_train, y_train, x_test, y_test (NHWC uint8 or float)."""

    name: str = "npz"
    path: str = MISSING


@dataclass
class SyntheticConfig(DataConfig):
    """Gaussian clusters; for tests and quick checks."""

    name: str = "synthetic"
    n_train: int = 256
    n_test: int = 128
    dim: int = 16
    classes: int = 4
    seed: int = 0


@dataclass
class CifarConfig(DataConfig):
    name: str = "cifar10"
    root: Optional[str] = None  # folder holding the official tarball or its extracted folder
    download: bool = True


@dataclass
class TinyImageNetConfig(DataConfig):
    name: str = "tiny_imagenet"
    root: Optional[str] = None
    download: bool = True


@dataclass
class WikiTextConfig(DataConfig):
    """WikiText-2 raw, BPE-tokenized (HF tokenizers, Whitespace pre-tokenizer)."""

    name: str = "wikitext2"
    root: Optional[str] = None  # folder with wiki.train.raw, wiki.valid.raw, wiki.test.raw
    download: bool = True
    vocab_size: int = 4096
    context: int = 64


@dataclass
class TextConfig(DataConfig):
    """Any UTF-8 text files, tokenized like WikiText-2 (BPE trained on `train`): LM runs offline."""

    name: str = "text"
    train: Optional[str] = None  # the training text (the tokenizer is trained on it)
    test: Optional[str] = None  # the test text
    vocab_size: int = 4096
    context: int = 64


# ----------------------------------------------------------------------------- probes
@dataclass
class ProbeConfig:
    """What is measured on the fixed, non-augmented measurement batch, and when.

    Probe steps: every step for the first `dense_steps`, then every `every` steps
    (or `log_points` log-spaced steps when > 0), plus the last step.
    """

    batch_size: int = 512
    dense_steps: int = 0
    every: int = 10
    log_points: int = 0
    sharpness: bool = True
    precond_sharpness: bool = True  # only meaningful for adam / gi_adam / ri_adam
    lanczos_iters: int = 20
    # stop when the Ritz residual ||H v - theta v|| <= tol * |theta|; the eigenvalue error is then
    # ~ tol^2 * theta / gap, far below the plotting precision; warm starts converge in a few HVPs
    lanczos_tol: float = 1e-3
    # residual: the rule above (default). gap: also stop once the eigenvalue error bound
    # gap_safety * r^2 / (Ritz gap) is below tol (fewer HVPs per warm probe: 3.57 vs 4.47 in
    # docs/benchmarks.md; after a poor warm start it can stop on lambda_2 instead of lambda_1)
    lanczos_stop: str = added("residual")
    dtype: str = "float32"  # float32 | float64
    members: str = "auto"  # how a cohort is probed: vmap | map (one by one) | auto (map on CPU)
    eval_every: int = 0  # test-set evaluation every k steps (0 = at probe steps)
    # older form of memory.budget_mib, kept so that run ids that carry it stay the same: > 0 fixes
    # the micro-batch budget in bytes AND enters the run id; 0 (default): memory.budget_mib decides
    microbatch_bytes: int = 0
    final_train_examples: int = 10000
    # registered diagnostics (sweep/diagnostics/): each off at its default
    hessian_trace: int = added(0)  # Hutchinson probe vectors per probe (0 = off)
    grad_cov: int = added(0)  # examples of the gradient covariance K (lambda_1^K, Tr K; 0 = off)
    ntk_trace: int = added(0)  # examples of the empirical NTK trace (0 = off)
    param_norm: bool = added(False)  # ||theta||_2 at probe steps
    # lambda0 (lr_unit=sharpness): 0 = on the fixed measurement batch above (our default); N >= 1 = the
    # mean over N batches of the training batch size drawn from the training set, the authors'
    # convention (a full-batch run: the whole training set, once); REPRODUCING.md, "lambda0"
    lambda0_batches: int = added(0)


@dataclass
class OutcomeConfig:
    """How a finished run is classified."""

    # Diverged = the training loss is NaN/inf (the paper's rule, Appendix D: Adam spikes by 1e3-1e9
    # and comes back, ending "failed", never "diverged"). Optional early stop for runs that blow up
    # and stay up: with blowup set, also diverged once the loss stays above blowup x initial loss
    # for blowup_patience consecutive updates. null = NaN/inf only.
    blowup: Optional[float] = None
    blowup_patience: int = 100
    fail_acc_factor: float = 1.5  # failed when final train accuracy < factor x chance
    lm_min_improvement: float = 0.1  # LM failed when final loss > (1 - x) * initial loss


@dataclass
class CohortConfig:
    max_size: int = 16


@dataclass
class MemoryConfig:
    """How much memory a probe may keep (an execution setting: not part of run ids). The probe's
    HVPs, lambda0, the gradient behind Adam's preconditioner and evaluations run over equal micro-
    batches that fit it, which gives the whole batch's values up to float summation order.
    null: the lesser of 256 MiB on a CPU (1 GiB on an accelerator) and 1/8 of the device's memory
    (sweep/runtime.py); 0: whole batches.
    train_mib: what the members of a cohort that train together may keep (their activations for the
    backward pass); a cohort that needs more trains in equal parts, one after another
    (sweep/cohort_memory.py), and a member that does not fit alone trains on equal micro-batches of
    its minibatch. null: the lesser of 1 GiB and 1/4 of a CPU host's memory, 3/4 of an accelerator's;
    0: no limit."""

    budget_mib: Optional[float] = None
    train_mib: Optional[float] = None


@dataclass
class ExtendConfig:
    """"Until divergence" (Appendix D.3.4): per line of the grid (every key fixed but lr), keep
    adding lr * factor until a run diverges or fails, then `margin` more points."""

    until_divergence: bool = False
    factor: float = 2.0
    margin: int = 1
    max_points: int = 24


@dataclass
class EtaCConfig:
    """The critical-lr search of Section 6.1 / Appendix B.2 (sweep/eta_c.py), used when
    lr_init_mode=eta_c. The iteration caps only bound the jit-compiled loops."""

    initial_guess: Optional[float] = None  # eta_0 in lr's units (lr_unit); null = lr / warmup (Figure 5)
    delta: float = 0.1  # stop when L(theta_1) < L(theta_0) (1 + delta)
    max_doublings: int = 40
    max_bisections: int = 30


@dataclass
class CatapultConfig:
    """Persistent catapult warmup (warmup_mode=catapult; Section 7, Algorithm 3; sweep/catapult.py).
    The search itself takes eta_c.delta / max_doublings / max_bisections / initial_guess (null:
    eta_trgt / 1000). The paper does not say which loss Algorithm 3 compares or searches on."""

    # probe: L(theta_t) vs L(theta*) and the eta_c search on the fixed measurement batch
    # (deterministic); batch: both on the current training minibatch (noisy comparison)
    loss: str = "probe"
    # state: the search steps along the optimizer's next update from its current state (momentum /
    # Adam moments included); fresh: along its first update from a fresh state (Section 6.1's search).
    # The two agree at theta_0 and for plain SGD.
    direction: str = "state"


# ----------------------------------------------------------------------------- execution
@dataclass
class ClusterConfig:
    """Where tasks run: `local` (in this process), `submitit_local` (background processes through
    submitit), `slurm` (a submitit job array). Presets: conf/cluster/*.yaml; every key overridable."""

    name: str = "local"
    executor: str = "local"  # local | submitit_local | slurm
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    timeout_min: int = 60  # per task (one array element)
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: Optional[int] = None
    array_parallelism: int = 64  # at most this many tasks of one submission run at once
    cohorts_per_task: int = 1
    setup: List[str] = field(default_factory=list)  # shell lines run before the task (module load ...)
    max_runs: int = 100000
    additional_parameters: Any = field(default_factory=dict)  # extra #SBATCH keys, e.g. {constraint: a100}
    signal_delay_s: int = 120  # SLURM sends USR2 this long before the time limit: checkpoint + requeue
    max_num_timeout: int = 3  # requeues after time limits before a task gives up
    checkpoint_every_s: float = 600.0  # periodic checkpoint of a running cohort (plus one on preemption)
    python: Optional[str] = None  # interpreter on the nodes (default: the one running `sweep submit`)


# ----------------------------------------------------------------------------- top level
@dataclass
class Config:
    defaults: List[Any] = field(
        default_factory=lambda: [
            "_self_",
            {"model": "fcn"},
            {"param": "sp"},
            {"optimizer": "sgd"},
            {"data": "digits"},
            {"cluster": "local"},
            {"experiment": None},
        ]
    )
    model: ModelConfig = MISSING
    param: ParamConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    data: DataConfig = MISSING
    cluster: ClusterConfig = MISSING
    loss: Loss = Loss.mse
    # MSE normalization (sets the sharpness scale): half_mean = 0.5 x mean over examples AND
    # classes (the authors' code), mean = mean over examples and classes, half_sum = 0.5 x sum over
    # classes, mean over examples (= C/2 x mean).
    mse_reduction: str = "half_mean"
    lr: float = 0.1
    lr_unit: LrUnit = LrUnit.absolute  # sharpness: lr is a multiple of 1/lambda0
    lr_init: float = 0.0
    lr_init_mode: str = "value"  # value: lr_init as given; eta_c: lr_init = the estimated eta_c (Section 6.1)
    warmup: int = 1
    # linear: eq. 7 over `warmup` updates; catapult: persistent catapult warmup (Section 7,
    # Algorithm 3): the lr jumps to the eta_c estimate (eta_c.* settings) each time the loss falls
    # below the last reference point, until it reaches lr; `warmup` is then unused.
    warmup_mode: str = "linear"
    decay: Decay = Decay.none
    decay_rho: float = 1.0
    decay_min_factor: float = 0.1
    batch_size: int = 128
    steps: int = 1000
    seed: int = 0  # initialization seed (per cohort member)
    data_seed: int = 0  # minibatch order and augmentation (shared by a cohort)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    cohort: CohortConfig = field(default_factory=CohortConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    extend: ExtendConfig = field(default_factory=ExtendConfig)
    eta_c: EtaCConfig = field(default_factory=EtaCConfig)
    catapult: CatapultConfig = field(default_factory=CatapultConfig)
    grid: Dict[str, Any] = field(default_factory=dict)  # experiment grids: key -> sweep string
    sweep_name: str = "default"
    results_dir: str = "results"
    force: bool = False


MODEL_OPTIONS = {"fcn": FCNConfig, "wrn": WRNConfig, "transformer": TransformerConfig}
PARAM_OPTIONS = {"sp": ParamConfig(name="sp"), "mup": ParamConfig(name="mup")}
OPTIMIZER_OPTIONS = {name: spec.schema for name, spec in optimizers.SPECS.items()}
DATA_OPTIONS = {
    "digits": DigitsConfig,
    "npz": NpzConfig,
    "synthetic": SyntheticConfig,
    "cifar10": CifarConfig,
    "cifar100": CifarConfig(name="cifar100"),
    "tiny_imagenet": TinyImageNetConfig,
    "wikitext2": WikiTextConfig,
    "text": TextConfig,
}

# Cluster presets are YAML files (conf/cluster/*.yaml) validated by the ClusterConfig type of
# Config.cluster; no ConfigStore entries of the same names (Hydra's deprecated schema matching).
CLUSTER_OPTIONS: dict = {}

MSE_REDUCTIONS = ("half_mean", "mean", "half_sum")
STANDARDIZATIONS = ("per_image", "per_channel")
WARMUP_MODES = ("linear", "catapult")

# Keys that say where or how a run is executed, not what it computes: not part of run ids.
EXECUTION_KEYS = ("sweep_name", "results_dir", "force", "cohort", "memory", "cluster", "grid", "extend")


def register_configs() -> None:
    """Put every schema into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, options in (
        ("model", MODEL_OPTIONS),
        ("param", PARAM_OPTIONS),
        ("optimizer", OPTIMIZER_OPTIONS),
        ("data", DATA_OPTIONS),
        ("cluster", CLUSTER_OPTIONS),
    ):
        for name, node in options.items():
            cs.store(group=group, name=name, node=node)


SWEEP_NAME = r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}"


def _non_finite(node: Any, prefix: str = "") -> Optional[str]:
    """The first float in a config that is inf or nan (dotted key=value), or None."""
    import math

    from omegaconf import DictConfig, ListConfig

    items = node.items() if isinstance(node, (dict, DictConfig)) else (
        enumerate(node) if isinstance(node, (list, ListConfig)) else ())
    for key, value in items:
        if isinstance(value, float) and not math.isfinite(value):
            return f"{prefix}{key}={value}"
        if isinstance(value, (dict, list, DictConfig, ListConfig)):
            found = _non_finite(value, f"{prefix}{key}.")
            if found:
                return found
    return None


def _check_location(cfg: Any) -> None:
    """The sweep folder must be results_dir/<a plain name>: never a path that escapes it."""
    import re
    from pathlib import Path

    name = str(cfg.sweep_name)
    if not re.fullmatch(SWEEP_NAME, name):
        raise ConfigError(f"sweep_name={name!r}: a sweep name is a plain folder name (letters, digits, "
                          f"'.', '_', '-', '+', '=', no '/', not '.' or '..'); to write elsewhere set results_dir=PATH")
    check_folder_path(Path(str(cfg.results_dir)), f"results_dir={cfg.results_dir}")


def check_folder_path(folder: Any, what: str) -> None:
    """A folder (existing or to be made) must not have a file in the way on its path."""
    from pathlib import Path

    folder = Path(folder)
    for part in [folder, *folder.parents]:
        if part.exists():
            if not part.is_dir():
                raise ConfigError(f"{what}: {part} is a file, not a folder; choose a folder with results_dir=PATH")
            break


# Keys without a default (MISSING): what to write instead, for the one-line error.
REQUIRED_HINTS = {
    "data.path": "data=npz reads your own file: add data.path=FILE.npz (an .npz with x_train, y_train, "
                 "x_test, y_test)",
}


def unset_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys still at MISSING ('???') in a DictConfig or a plain config dict. Why: reading one
    raises omegaconf's MissingMandatoryValue, a 50-line traceback instead of a user error."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        return sorted(prefix + k for k in OmegaConf.missing_keys(node))
    out: list[str] = []
    for key, value in (node.items() if isinstance(node, dict) else ()):
        if isinstance(value, dict):
            out += unset_keys(value, f"{prefix}{key}.")
        elif value == MISSING:
            out.append(f"{prefix}{key}")
    return out


def check_required(cfg: Any, pending: Any = ()) -> list[str]:
    """Every key without a default must be set, except those in `pending` (set by a grid's sweep,
    cell by cell): one line naming the key and an example. Returns the pending keys still unset."""
    unset = unset_keys(cfg)
    for key in unset:
        if key not in pending:
            raise ConfigError(f"{key} is not set: {REQUIRED_HINTS.get(key, f'add {key}=VALUE')}")
    return unset


def validate(cfg: Any, pending: Any = ()) -> None:
    """Reject values the types allow but the physics does not; one clear message each. `pending`:
    keys without a default that a grid's sweep sets later (check_required). Each axis checks its own
    keys: the run's schedule and outcome here, the probes, the optimizer (its spec), the model (its schema)."""
    if check_required(cfg, pending):
        return  # a grid's base config waiting for its sweep: each cell, every key set, is checked
    bad_float = _non_finite(cfg)
    if bad_float:
        raise ConfigError(f"{bad_float}: every number in a config must be finite")
    _check_location(cfg)
    opt = cfg.optimizer
    checks = [*_run_checks(cfg), *_probe_checks(cfg), *optimizers.get(opt).validate(opt),
              (opt.clip_norm is None or opt.clip_norm > 0, f"optimizer.clip_norm={opt.clip_norm}: must be > 0 or null"),
              *MODEL_OPTIONS[cfg.model.name].checks(cfg)]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _run_checks(cfg: Any) -> list[tuple[bool, str]]:
    """The schedule, data, parameterization, outcome and execution keys."""
    return [
        (cfg.lr > 0, f"lr={cfg.lr}: the target learning rate must be > 0"),
        (cfg.lr_init >= 0, f"lr_init={cfg.lr_init}: must be >= 0"),
        (cfg.warmup >= 1, f"warmup={cfg.warmup}: must be >= 1 (warmup=1 is a constant learning rate)"),
        (cfg.steps >= 1, f"steps={cfg.steps}: must be >= 1"),
        (cfg.batch_size >= 0, f"batch_size={cfg.batch_size}: must be >= 0 (0 = full batch)"),
        (cfg.decay_rho >= 0, f"decay_rho={cfg.decay_rho}: must be >= 0"),
        (cfg.data.subset >= 0, f"data.subset={cfg.data.subset}: must be >= 0 (0 = the whole training set)"),
        (cfg.seed >= 0 and cfg.data_seed >= 0, "seed and data_seed must be >= 0"),
        (cfg.param.init_scale > 0, f"param.init_scale={cfg.param.init_scale}: must be > 0"),
        (cfg.param.name in ("sp", "mup"), f"param.name={cfg.param.name}: allowed sp, mup"),
        (cfg.param.truncation in ("jax", "exact"), f"param.truncation={cfg.param.truncation}: allowed jax, exact"),
        (cfg.mse_reduction in MSE_REDUCTIONS,
         f"mse_reduction={cfg.mse_reduction}: allowed {', '.join(MSE_REDUCTIONS)}"),
        (cfg.data.standardize in STANDARDIZATIONS,
         f"data.standardize={cfg.data.standardize}: allowed {', '.join(STANDARDIZATIONS)}"),
        (cfg.warmup_mode in WARMUP_MODES, f"warmup_mode={cfg.warmup_mode}: allowed {', '.join(WARMUP_MODES)}"),
        (cfg.outcome.blowup is None or cfg.outcome.blowup > 1,
         f"outcome.blowup={cfg.outcome.blowup}: must be > 1 (a multiple of the initial loss) or null"),
        (cfg.outcome.blowup_patience >= 1, f"outcome.blowup_patience={cfg.outcome.blowup_patience}: must be >= 1"),
        (cfg.cohort.max_size >= 1, f"cohort.max_size={cfg.cohort.max_size}: must be >= 1"),
        (cfg.memory.budget_mib is None or cfg.memory.budget_mib >= 0,
         f"memory.budget_mib={cfg.memory.budget_mib}: must be >= 0 MiB (0 = whole batches) or null (automatic)"),
        (cfg.memory.train_mib is None or cfg.memory.train_mib >= 0,
         f"memory.train_mib={cfg.memory.train_mib}: must be >= 0 MiB (0 = no limit) or null (automatic)"),
        (cfg.extend.factor > 1, f"extend.factor={cfg.extend.factor}: must be > 1"),
        (cfg.extend.margin >= 0, f"extend.margin={cfg.extend.margin}: must be >= 0"),
        (cfg.lr_init_mode in ("value", "eta_c"), f"lr_init_mode={cfg.lr_init_mode}: allowed value, eta_c"),
        (cfg.lr_init_mode == "value" or cfg.lr_init == 0,
         f"lr_init={cfg.lr_init} with lr_init_mode=eta_c: the search sets lr_init; drop lr_init or use lr_init_mode=value"),
        (cfg.eta_c.delta > 0, f"eta_c.delta={cfg.eta_c.delta}: must be > 0"),
        (cfg.warmup_mode != "catapult" or (cfg.lr_init_mode == "value" and cfg.lr_init == 0),
         "warmup_mode=catapult sets the lr by its own eta_c searches: drop lr_init / lr_init_mode=eta_c"),
        (cfg.catapult.loss in ("probe", "batch"), f"catapult.loss={cfg.catapult.loss}: allowed probe, batch"),
        (cfg.catapult.direction in ("state", "fresh"),
         f"catapult.direction={cfg.catapult.direction}: allowed state, fresh"),
        (cfg.eta_c.initial_guess is None or cfg.eta_c.initial_guess > 0,
         f"eta_c.initial_guess={cfg.eta_c.initial_guess}: must be > 0 or null (null = lr / warmup)"),
        (cfg.eta_c.max_doublings >= 1 and cfg.eta_c.max_bisections >= 0,
         "eta_c.max_doublings must be >= 1 and eta_c.max_bisections >= 0"),
    ]


def _probe_checks(cfg: Any) -> list[tuple[bool, str]]:
    p = cfg.probe
    return [
        (p.every >= 1, f"probe.every={p.every}: must be >= 1"),
        (p.batch_size >= 1, f"probe.batch_size={p.batch_size}: must be >= 1 (examples measured)"),
        (p.dense_steps >= 0 and p.log_points >= 0 and p.eval_every >= 0,
         "probe.dense_steps, probe.log_points and probe.eval_every must be >= 0"),
        (int(p.get("lambda0_batches", 0)) >= 0,
         f"probe.lambda0_batches={p.get('lambda0_batches')}: must be >= 0 (0: the measurement batch)"),
        (p.final_train_examples >= 1, f"probe.final_train_examples={p.final_train_examples}: must be >= 1"),
        (p.lanczos_iters >= 2, f"probe.lanczos_iters={p.lanczos_iters}: must be >= 2"),
        (p.get("hessian_trace", 0) >= 0,
         f"probe.hessian_trace={p.get('hessian_trace')}: must be >= 0 (probe vectors; 0 = off)"),
        (p.get("grad_cov", 0) == 0 or 2 <= p.get("grad_cov", 0) <= p.batch_size,
         f"probe.grad_cov={p.get('grad_cov')}: must be 0 (off) or between 2 and probe.batch_size "
         f"({p.batch_size}) examples"),
        (0 <= p.get("ntk_trace", 0) <= p.batch_size,
         f"probe.ntk_trace={p.get('ntk_trace')}: must be 0 (off) or between 1 and probe.batch_size "
         f"({p.batch_size}) examples"),
        (p.dtype in ("float32", "float64"), f"probe.dtype={p.dtype}: allowed float32, float64"),
        (p.members in ("auto", "vmap", "map"), f"probe.members={p.members}: allowed auto, vmap, map"),
        (p.get("lanczos_stop", "residual") in ("residual", "gap"),
         f"probe.lanczos_stop={p.get('lanczos_stop')}: allowed residual, gap"),
    ]


def from_dict(stored: dict) -> Any:
    """A typed config from a stored dict (a manifest or a record), with keys that were added to the
    schema after it was written filled in with their defaults, so queued work survives upgrades."""
    from omegaconf import OmegaConf, open_dict

    base = OmegaConf.structured(Config)
    for group, options in (("model", MODEL_OPTIONS), ("param", PARAM_OPTIONS),
                           ("optimizer", OPTIMIZER_OPTIONS), ("data", DATA_OPTIONS)):
        name = (stored.get(group) or {}).get("name")
        if name not in options:
            raise ConfigError(f"stored config has unknown {group} '{name}'; allowed: {', '.join(options)}")
        base[group] = OmegaConf.structured(options[name])
    base.cluster = OmegaConf.structured(ClusterConfig)
    merged = OmegaConf.merge(base, {k: v for k, v in stored.items() if k != "defaults"})
    with open_dict(merged):  # Hydra drops the defaults list from composed configs; so do we
        merged.pop("defaults", None)
    return merged
