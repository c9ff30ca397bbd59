"""Hydra overrides -> runs -> cohorts.

Grids use Hydra's own sweep syntax, on the command line (`lr=0.05,0.1 warmup=range(0,3)
param=sp,mup model=glob(*)`) or in an experiment's `grid:` block, plus `pow2(a,b[,step])` for
the paper's 2^x learning-rate axes. Each cell is composed by Hydra (so every typo and type error
is caught by the structured configs) and gets a stable run id.
"""
from __future__ import annotations

import copy
import functools
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
@functools.lru_cache(maxsize=1)
def _parser():
    """One override parser (with `pow2`) per process: every override of a grid is parsed twice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser, create_functions
    from hydra.core.override_parser.types import ChoiceSweep

    def pow2(start, stop, step=1.0):  # no annotations: Hydra type-checks them at call time
        """2^x for x = start, start+step, ..., stop (inclusive)."""
        if not all(isinstance(v, (int, float)) for v in (start, stop, step)):
            raise ValueError("pow2(start, stop[, step]) takes numbers, e.g. pow2(-3,3) or pow2(0,4,0.5)")
        if step == 0 or (stop - start) * step < 0:
            raise ValueError(f"pow2({start}, {stop}, {step}): the step must be non-zero and go from start "
                             f"towards stop, e.g. pow2({start}, {stop}, {1 if stop >= start else -1})")
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
        raise ConfigError(parse_error_message(exc, overrides)) from None
    axes: dict[str, list[str]] = {}
    for ov in parsed:
        key = ov.get_key_element()
        if not ov.is_sweep_override():
            axes[key] = [f"{key}={ov.get_value_element_as_str()}"]
        elif isinstance(ov.value(), Glob):
            names = ov.value().filter(_group_options(ov.key_or_group, config_dir))
            axes[key] = [f"{key}={n}" for n in names]
        elif ov.is_discrete_sweep():
            try:
                axes[key] = [f"{key}={v}" for v in ov.sweep_string_iterator()]
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"cannot expand '{ov.input_line}': {exc}") from None
        else:
            raise ConfigError(f"'{key}': only discrete sweeps (a,b,c / range / glob / pow2) make grids")
    return [list(cell) for cell in itertools.product(*axes.values())]


def parse_error_message(exc: BaseException, overrides: Sequence[str]) -> str:
    """Hydra's parse errors name the override on one line and the reason, in grammar terms, on the
    next: one line with both, in words where we can."""
    import re

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("See https")]
    which = re.search(r"Error parsing override '(.*)'", lines[0]) if lines else None
    reason = lines[1] if which and len(lines) > 1 else (lines[0] if lines else exc.__class__.__name__)
    reason = re.sub(r"^\w+Error while evaluating '[^']*': ", "", reason)
    override = which.group(1) if which else next((o for o in overrides if o and o.split("=")[-1] in reason), "")
    value = override.split("=", 1)[1] if "=" in override else override
    if re.search(r",\s*,|^\s*,|,\s*$", value):
        reason = "an empty value in a comma list (write a,b,c)"
    elif "extraneous input" in reason or "no viable alternative" in reason or "mismatched input" in reason:
        reason = ("not valid override syntax (sweeps: a,b,c | range(a,b[,step]) | pow2(a,b[,step]) | glob(*); "
                  "quote values with spaces or brackets)")
    return f"cannot parse override '{override or ' '.join(overrides)}': {reason}"


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """`+key=v` / `++key=v` set a key like `key=v`: every key already exists in the schema, so an
    append can only add a misspelt key (which would train under a new run id). Dropping the `+`
    makes such typos fail with the usual did-you-mean. Deleting keys (`~key`) is refused."""
    out = []
    for o in overrides:
        if o.startswith("~"):
            key = o[1:].split("=", 1)[0]
            raise ConfigError(f"'{o}': deleting config keys is not supported (every key has a default); "
                              f"set a value instead, e.g. {key}=VALUE")
        out.append(o.lstrip("+"))
    return out


def check_syntax(overrides: Sequence[str]) -> None:
    """Parse every override with our grammar (pow2 included) so a malformed one is reported as
    such, not later as an unknown function or a bad value."""
    from hydra.errors import HydraException

    register_configs()
    try:
        _parser().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(parse_error_message(exc, overrides)) from None


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
        raise ConfigError(_explain(exc, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_readonly(cfg, False)
    validate(cfg)
    return cfg


def _explain(exc: BaseException, overrides: Sequence[str] = ()) -> str:
    """Turn Hydra/OmegaConf's multi-line errors into one line naming the key and the choices."""
    import difflib
    import re

    from sweep import config as schema

    text = str(exc).strip()
    if text.startswith("Error parsing override") or "override_grammar" in text:
        return parse_error_message(exc, overrides)
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        opts = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], flags=re.M)
        return f"unknown {group} '{name}'; allowed: {', '.join(opts)} (e.g. {group}={opts[0] if opts else '...'})"
    cause = exc.__cause__ or exc
    ctext = str(cause).strip()
    key_m = re.search(r"full_key: (\S+)", ctext)
    key = key_m.group(1) if key_m else ""
    first = ctext.splitlines()[0] if ctext else exc.__class__.__name__
    unknown = re.search(r"Key '([^']+)' not in '(\w+)'", ctext)
    if unknown:
        name, owner = unknown.groups()
        node = getattr(schema, owner, None)
        fields = [f for f in getattr(node, "__dataclass_fields__", {}) if f != "defaults"]
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f"; did you mean '{key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}'?" if close else ""
        return f"unknown config key '{key or name}'{hint} (allowed here: {', '.join(fields)})"
    if key:
        return f"{key}: {first}"
    return text.splitlines()[0] if text else exc.__class__.__name__


def expand(overrides: Sequence[str], config_dir: Path = CONF_DIR, max_runs: Optional[int] = None) -> list[RunSpec]:
    """All runs of a grid: experiment `grid:` entries, then command-line overrides (which win)."""
    overrides = normalize_overrides(overrides)
    check_syntax(overrides)
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


# ----------------------------------------------------------------------------- until divergence
def line_key(cfg: Any) -> str:
    """Runs on one line of the lr axis share every config value except lr."""
    from sweep.identity import _drop, _hash, identity_dict

    d = identity_dict(cfg)
    _drop(d, "lr")
    return _hash(d)


def extend_until_divergence(runs: Sequence[RunSpec], outcomes: dict[str, Optional[str]]) -> list[RunSpec]:
    """The next lr points to try, given the outcomes known so far (run_id -> outcome or None).

    For each line: if no run has diverged or failed yet, add max(lr) * factor; if one has, add
    points above the first unstable lr until `margin` of them exist. Lines with pending runs wait;
    a line stops at `extend.max_points` lr values. Returns only runs not already in `runs`.
    """
    lines: dict[str, list[RunSpec]] = {}
    for spec in runs:
        if spec.cfg.extend.until_divergence:
            lines.setdefault(line_key(spec.cfg), []).append(spec)
    new: list[RunSpec] = []
    for specs in lines.values():
        if any(outcomes.get(s.run_id) in (None, "error") for s in specs):
            continue
        ext = specs[0].cfg.extend
        lrs = sorted(float(s.cfg.lr) for s in specs)
        unstable = sorted(float(s.cfg.lr) for s in specs if outcomes[s.run_id] in ("diverged", "failed"))
        above = [lr for lr in lrs if unstable and lr > unstable[0]]
        if len(lrs) >= int(ext.max_points) or (unstable and len(above) >= int(ext.margin)):
            continue
        top = max(specs, key=lambda s: float(s.cfg.lr))
        cfg = copy.deepcopy(top.cfg)
        cfg.lr = float(top.cfg.lr) * float(ext.factor)
        new.append(RunSpec(run_id(cfg), cfg, {**top.grid, "lr": float(cfg.lr)}))
    return new
