"""Hydra overrides -> runs -> cohorts.

Grids use Hydra's own sweep syntax, on the command line (`lr=0.05,0.1 warmup=range(0,3)
param=sp,mup model=glob(*)`) or in an experiment's `grid:` block, plus `pow2(a,b[,step])` for
the paper's 2^x learning-rate axes. Each cell is composed by Hydra (so every typo and type error
is caught by the structured configs) and gets a stable run id.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from sweep.config import ConfigError, register_configs, validate
from sweep.errors import GridError
from sweep.identity import cohort_key, run_id

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class RunSpec:
    run_id: str
    cfg: DictConfig
    grid: dict[str, Any] = field(default_factory=dict)  # the swept keys of this cell


@dataclass
class Cohort:
    key: str
    runs: list[RunSpec]


# ----------------------------------------------------------------------------- parsing
def _parser():
    from hydra._internal.grammar.functions import Functions  # noqa: F401 (type only)
    from hydra.core.override_parser.overrides_parser import OverridesParser, create_functions
    from hydra.core.override_parser.types import ChoiceSweep

    def pow2(start: float, stop: float, step: float = 1.0) -> ChoiceSweep:
        """2^x for x = start, start+step, ..., stop (inclusive)."""
        n = int(round((stop - start) / step)) + 1
        return ChoiceSweep(list=[float(2.0 ** (start + i * step)) for i in range(n)])

    functions = create_functions()
    functions.register(name="pow2", func=pow2)
    return OverridesParser(functions)


def _group_options(group: str, config_dir: Path) -> list[str]:
    from hydra.core.config_store import ConfigStore

    names = set(ConfigStore.instance().list(group) if group in ConfigStore.instance().repo else [])
    names = {n.removesuffix(".yaml") for n in names}
    if (config_dir / group).is_dir():
        names |= {p.stem for p in (config_dir / group).glob("*.yaml")}
    return sorted(names)


def split_overrides(overrides: Sequence[str], config_dir: Path = CONF_DIR) -> list[list[str]]:
    """Expand sweep overrides into the list of cells (each a list of plain overrides)."""
    register_configs()
    from hydra.errors import HydraException
    from hydra.core.override_parser.types import Glob

    try:
        parsed = _parser().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {str(exc).splitlines()[0]}") from None
    axes: dict[str, list[str]] = {}
    for ov in parsed:
        key = ov.get_key_element()
        if not ov.is_sweep_override():
            axes[key] = [f"{key}={ov.get_value_element_as_str()}"]
        elif isinstance(ov.value(), Glob):
            names = ov.value().filter(_group_options(ov.key_or_group, config_dir))
            axes[key] = [f"{key}={n}" for n in names]
        elif ov.is_discrete_sweep():
            axes[key] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
        else:
            raise ConfigError(f"'{key}': only discrete sweeps (a,b,c / range / glob / pow2) make grids")
    return [list(cell) for cell in itertools.product(*axes.values())]


# ----------------------------------------------------------------------------- composing
def compose(overrides: Sequence[str], config_dir: Path = CONF_DIR) -> DictConfig:
    """One fully resolved, validated config; user errors become one-line ConfigErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain(exc)) from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_readonly(cfg, False)
    validate(cfg)
    return cfg


def _explain(exc: BaseException) -> str:
    """Hydra/OmegaConf messages are long; keep the line that names the key and the choices."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else exc.__class__.__name__
    if "Available options" in text:
        opts = [ln.lstrip("\t -") for ln in lines if ln.startswith(("\t", "-"))]
        idx = next((i for i, ln in enumerate(lines) if "Available options" in ln), 0)
        opts = [ln.lstrip("- ") for ln in lines[idx + 1:]]
        return f"{first} Allowed: {', '.join(opts)}"
    if "full_key:" in text:
        key = next((ln.split("full_key:")[1].strip() for ln in lines if "full_key:" in ln), "")
        if "not in struct" in text or "Key '" in first and "is not" in first:
            return f"unknown config key '{key}' ({first}); run `sweep run --help-config` to list keys"
        return f"{key}: {first}"
    return first


def expand(overrides: Sequence[str], config_dir: Path = CONF_DIR, max_runs: Optional[int] = None) -> list[RunSpec]:
    """All runs of a grid: experiment `grid:` entries, then command-line overrides (which win)."""
    base_overrides = [o for o in overrides if not _is_sweep(o)]
    base = compose(base_overrides, config_dir)
    grid_block = dict(base.get("grid") or {})
    cli_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    merged = [f"{k}={v}" for k, v in grid_block.items() if k not in cli_keys] + list(overrides)
    cells = split_overrides(merged, config_dir)
    limit = max_runs if max_runs is not None else int(base.cluster.max_runs)
    if not cells:
        raise GridError("the grid expands to zero runs; check the sweep values")
    if len(cells) > limit:
        raise GridError(f"the grid expands to {len(cells)} runs, more than the limit {limit}; "
                        f"raise it with cluster.max_runs=N")
    swept = _swept_keys(merged)
    specs, seen = [], set()
    for cell in cells:
        cfg = compose(cell, config_dir)
        rid = run_id(cfg)
        if rid in seen:
            continue
        seen.add(rid)
        grid = {k: OmegaConf.select(cfg, k) for k in swept}
        grid = {k: (v.value if hasattr(v, "value") else v) for k, v in grid.items()}
        specs.append(RunSpec(rid, cfg, grid))
    return specs


def _is_sweep(override: str) -> bool:
    try:
        return any(o.is_sweep_override() for o in _parser().parse_overrides([override]))
    except Exception:  # noqa: BLE001 - unparsable overrides are reported by compose()
        return False


def _swept_keys(overrides: Iterable[str]) -> list[str]:
    keys = []
    for o in overrides:
        if _is_sweep(o):
            key = o.split("=", 1)[0].lstrip("+~")
            group_keys = {"model", "param", "optimizer", "data", "cluster"}
            keys.append(f"{key}.name" if key in group_keys else key)
    return list(dict.fromkeys(keys))


def make_cohorts(runs: Sequence[RunSpec], max_size: Optional[int] = None) -> list[Cohort]:
    """Pack runs that share every shape into cohorts of at most `cohort.max_size` members.
    Deterministic: runs keep their grid order inside a cohort, cohorts are ordered by first run."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in runs:
        groups.setdefault(cohort_key(spec.cfg), []).append(spec)
    cohorts = []
    for key, members in groups.items():
        size = max_size or int(members[0].cfg.cohort.max_size)
        for i in range(0, len(members), size):
            cohorts.append(Cohort(key, members[i:i + size]))
    return cohorts
