"""Hydra overrides -> runs -> cohorts.

Grids use Hydra's own sweep syntax, on the command line (`lr=0.05,0.1 warmup=range(0,3)
param=sp,mup model=glob(*)`) or in an experiment's `grid:` block, plus `pow2(a,b[,step])` for
the paper's 2^x learning-rate axes. Every typo and type error is caught by the structured configs
and every cell gets a stable run id.

Speed: composing each cell through Hydra costs ~0.1-0.4 s, so a 10,000-cell grid would take an
hour. Hydra applies value overrides (`lr=0.1`) on top of the config composed from the group choices
(`model=wrn`, `experiment=...`), with OmegaConf.update(merge=True); we do the same, but compose
once per distinct set of group choices, convert each distinct (key, value) once through the typed
config, and build each cell as a plain dict. tests/test_grid_fast.py checks that every cell equals
Hydra's own composition. Cells keep their config as that dict until something needs a DictConfig.
"""
from __future__ import annotations

import copy
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from sweep.config import ConfigError, register_configs, validate
from sweep.errors import GridError
from sweep.identity import cohort_key, get_dotted, run_id

CONF_DIR = Path(__file__).resolve().parent / "conf"  # shipped inside the package (wheel); ./conf links here


GROUPS = ("model", "param", "optimizer", "data", "cluster", "experiment")


class RunSpec:
    """One cell of a grid: its run id, its config and its swept values (`grid`). The config may be
    held as the plain dict the grid expansion builds; `cfg` turns it into a typed DictConfig on first
    use (only cells that are trained or inspected pay for it)."""

    __slots__ = ("run_id", "_cfg", "grid")

    def __init__(self, run_id: str, cfg: Any, grid: Optional[dict[str, Any]] = None):
        self.run_id, self._cfg, self.grid = run_id, cfg, dict(grid or {})

    @property
    def cfg(self) -> DictConfig:
        if not isinstance(self._cfg, DictConfig):
            from sweep.config import from_dict

            self._cfg = from_dict(self._cfg)
        return self._cfg

    @cfg.setter
    def cfg(self, value: Any) -> None:
        self._cfg = value

    def config_dict(self) -> dict:
        """The resolved config as a fresh plain dict (no DictConfig is built)."""
        from sweep.identity import to_dict

        return to_dict(self._cfg)

    def get(self, dotted: str, default: Any = None) -> Any:
        """One config value, without building a DictConfig."""
        if isinstance(self._cfg, DictConfig):
            value = OmegaConf.select(self._cfg, dotted, default=default)
            return getattr(value, "name", value) if hasattr(value, "value") and hasattr(value, "name") else value
        from sweep.identity import get_dotted

        return get_dotted(self._cfg, dotted, default)

    def __repr__(self) -> str:
        return f"RunSpec({self.run_id!r}, grid={self.grid!r})"


@dataclass
class Cohort:
    key: str
    runs: list[RunSpec]


# ----------------------------------------------------------------------------- parsing
@functools.lru_cache(maxsize=1)
def override_parser():
    """One override parser (with `pow2`) per process: every override of a grid is parsed twice."""
    from hydra.core.override_parser.overrides_parser import OverridesParser, create_functions
    from hydra.core.override_parser.types import ChoiceSweep

    from sweep.integers import floor_tolerant

    def pow2(start, stop, step=1.0):  # no annotations: Hydra type-checks them at call time
        """2^x for x = start, start+step, ..., stop (inclusive)."""
        if not all(isinstance(v, (int, float)) for v in (start, stop, step)):
            raise ValueError("pow2(start, stop[, step]) takes numbers, e.g. pow2(-3,3) or pow2(0,4,0.5)")
        if step == 0 or (stop - start) * step < 0:
            raise ValueError(f"pow2({start}, {stop}, {step}): the step must be non-zero and go from start "
                             f"towards stop, e.g. pow2({start}, {stop}, {1 if stop >= start else -1})")
        # the last exponent <= stop: pow2(0,0.9,0.3) has 4 values although 0.9/0.3 = 2.9999999999999996
        n = floor_tolerant((stop - start) / step, tol=1e-9 * max(1.0, abs((stop - start) / step))) + 1
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


# Config blocks whose keys are the user's own (sbatch options), not the schema's.
FREE_FORM_PREFIXES = ("cluster.additional_parameters.",)


@dataclass
class _Axis:
    """One override of a grid: its key, its values as Hydra assigns them (typed) and as override
    strings, and whether it selects a config group."""

    key: str
    values: list
    strings: list[str]
    group: bool

    @property
    def free_form(self) -> bool:
        """A key of a block the user fills (sbatch options): set or added (`++`), never refused."""
        return self.key.startswith(FREE_FORM_PREFIXES)

    def override(self, i: int) -> str:
        return f"{'++' if self.free_form else ''}{self.key}={self.strings[i]}"


def _axes(overrides: Sequence[str], config_dir: Path) -> list[_Axis]:
    register_configs()
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    try:
        parsed = override_parser().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(parse_error_message(exc, overrides)) from None
    axes: dict[str, _Axis] = {}
    for ov in parsed:
        key = ov.get_key_element().lstrip("+")  # `++` only on free-form keys (normalize_overrides)
        group = ov.key_or_group in GROUPS
        if not ov.is_sweep_override():
            axes[key] = _Axis(key, [ov.value()], [ov.get_value_element_as_str()], group)
        elif isinstance(ov.value(), Glob):
            names = ov.value().filter(_group_options(ov.key_or_group, config_dir))
            axes[key] = _Axis(key, list(names), list(names), group)
        elif ov.is_discrete_sweep():
            try:
                axes[key] = _Axis(key, list(ov.sweep_iterator()), list(ov.sweep_string_iterator()), group)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"cannot expand '{ov.input_line}': {exc}") from None
        else:
            raise ConfigError(f"'{key}': only discrete sweeps (a,b,c / range / glob / pow2) make grids")
    return list(axes.values())


def split_overrides(overrides: Sequence[str], config_dir: Path = CONF_DIR) -> list[list[str]]:
    """Expand sweep overrides into the list of cells (each a list of plain overrides)."""
    axes = _axes(overrides, config_dir)
    return [[a.override(i) for a, i in zip(axes, cell)] for cell in itertools.product(*(range(len(a.strings)) for a in axes))]


def parse_error_message(exc: BaseException, overrides: Sequence[str]) -> str:
    """Hydra's parse errors name the override on one line and the reason, in grammar terms, on the
    next: one line with both, in words where we can."""
    import re

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("See https")]
    which = re.search(r"Error parsing override '(.*)'", lines[0]) if lines else None
    reason = lines[1] if which and len(lines) > 1 else (lines[0] if lines else exc.__class__.__name__)
    reason = re.sub(r"^\w+Error while evaluating '[^']*': ", "", reason)
    override = which.group(1) if which else _failing_override(overrides)
    value = override.split("=", 1)[1] if "=" in override else override
    bad_char = _lexer_character(str(exc))
    if bad_char is not None:
        reason = (f"the character {bad_char!r} is not allowed in an unquoted value (quote the value, "
                  f"e.g. key='...', or drop the character)")
    elif re.search(r",\s*,|^\s*,|,\s*$", value):
        reason = "an empty value in a comma list (write a,b,c)"
    elif "extraneous input" in reason or "no viable alternative" in reason or "mismatched input" in reason:
        reason = ("not valid override syntax (sweeps: a,b,c | range(a,b[,step]) | pow2(a,b[,step]) | glob(*); "
                  "quote values with spaces or brackets)")
    return f"cannot parse override '{override or ' '.join(overrides)}': {reason}"


def _failing_override(overrides: Sequence[str]) -> str:
    """The first override that does not parse on its own. Why: a lexer error names no override (it
    shows the text, which matching by value misattributed: `model.depth=2` for `sweep_name=run2`x`)."""
    from hydra.errors import HydraException

    for o in overrides:
        try:
            override_parser().parse_overrides([o])
        except HydraException:
            return o
    return ""


def _lexer_character(text: str) -> Optional[str]:
    """The character a LexerNoViableAltException points at (its message: the input, then a caret
    line under the offending character), or None for any other parse error."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("LexerNoViableAltException: ") or len(lines) < 2:
        return None
    column = lines[1].find("^")
    return lines[0][column] if 0 <= column < len(lines[0]) else None


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """`+key=v` / `++key=v` set a key like `key=v`: every key already exists in the schema, so an
    append can only add a misspelt key (which would train under a new run id). Dropping the `+`
    makes such typos fail with the usual did-you-mean. Deleting keys (`~key`) is refused. The one
    free-form block, `cluster.additional_parameters` (any sbatch option), takes new keys with or
    without `+`: its keys become `++` (set, or add when the preset lacks it)."""
    out = []
    for o in overrides:
        if o.startswith("~"):
            key = o[1:].split("=", 1)[0]
            raise ConfigError(f"'{o}': deleting config keys is not supported (every key has a default); "
                              f"set a value instead, e.g. {key}=VALUE")
        plain = o.lstrip("+")
        out.append(f"++{plain}" if plain.startswith(FREE_FORM_PREFIXES) else plain)
    return out



def check_syntax(overrides: Sequence[str]) -> None:
    """Parse every override with our grammar (pow2 included) so a malformed one is reported as
    such, not later as an unknown function or a bad value."""
    from hydra.errors import HydraException

    register_configs()
    try:
        override_parser().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(parse_error_message(exc, overrides)) from None


# ----------------------------------------------------------------------------- composing
def compose(overrides: Sequence[str], config_dir: Path = CONF_DIR, check: bool = True) -> DictConfig:
    """One fully resolved, validated (unless `check` is False) config; user errors become one-line
    ConfigErrors."""
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
    if check:
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
    base_overrides = [o for o in overrides if not is_sweep(o)]
    base = compose(base_overrides, config_dir, check=False)
    grid_block = dict(base.get("grid") or {})
    cli_keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    merged = [f"{k}={v}" for k, v in grid_block.items() if k not in cli_keys] + list(overrides)
    validate(base, pending=_swept_keys(merged))  # a key without a default may come from a sweep (data.path=a,b)
    axes = _axes(merged, config_dir)
    n_cells = 1
    for a in axes:
        n_cells *= len(a.values)
    limit = max_runs if max_runs is not None else int(base.cluster.max_runs)
    if not n_cells:
        raise GridError("the grid expands to zero runs; check the sweep values")
    if n_cells > limit:
        raise GridError(f"the grid expands to {n_cells} runs, more than the limit {limit}; "
                        f"raise it with cluster.max_runs=N")
    swept = _swept_keys(merged)
    recorded_grid = effective_grid(merged)
    builder = _CellBuilder(config_dir)
    specs, seen = [], set()
    cells = itertools.product(*(range(len(a.values)) for a in axes))
    if n_cells >= 2000:
        from tqdm import tqdm

        cells = tqdm(cells, total=n_cells, unit="cell", desc="expanding the grid", disable=None, leave=False)
    for cell in cells:
        d = builder.build([(a, i) for a, i in zip(axes, cell)])
        d["grid"] = dict(recorded_grid)
        rid = run_id(d)
        if rid in seen:
            continue
        seen.add(rid)
        grid = {k: get_dotted(d, k) for k in swept}
        specs.append(RunSpec(rid, d, grid))
    warn_short_warmup(specs)
    return specs


def short_warmup(specs: Sequence[RunSpec]) -> list[tuple[int, int]]:
    """The distinct (warmup, steps) of runs whose linear warmup is longer than their training
    (lr_init_mode=value: eta_c shortens the warmup at training time; catapult ignores it)."""
    pairs = []
    for spec in specs:
        if spec.get("warmup_mode") != "linear" or spec.get("lr_init_mode") != "value":
            continue
        warmup, steps = int(spec.get("warmup")), int(spec.get("steps"))
        if warmup > steps:
            pairs.append((warmup, steps))
    return sorted(set(pairs))


def warn_short_warmup(specs: Sequence[RunSpec]) -> None:
    """One `warning:` line per grid (sweep.errors.SweepWarning) when runs warm up for longer than
    they train: they never reach their target lr (warmup=100, steps=10: 10/100 of the way), which
    used to train silently while `lr` in the records said the target. Their summaries' `max_lr`
    holds the largest lr really used."""
    import warnings

    from sweep.errors import SweepWarning

    pairs = short_warmup(specs)
    if not pairs:
        return
    n = sum(1 for s in specs if (int(s.get("warmup")), int(s.get("steps"))) in set(pairs))
    shown = ", ".join(f"warmup={w} steps={t}" for w, t in pairs[:6]) + (", ..." if len(pairs) > 6 else "")
    warnings.warn(f"{n} of {len(specs)} runs warm up for longer than they train ({shown}): their lr never "
                  f"reaches the target lr (at most steps/warmup of the way); summary.max_lr records the largest "
                  f"lr used; lower warmup or raise steps to reach it", SweepWarning, stacklevel=2)


class _CellBuilder:
    """Builds cells as plain dicts the way Hydra composes them: the config of the cell's group
    choices (composed by Hydra once per distinct choice), then each value override applied with
    OmegaConf.update(merge=True) (converted through the typed config once per distinct value)."""

    def __init__(self, config_dir: Path):
        self.config_dir = config_dir
        self._bases: dict[tuple, tuple[DictConfig, dict]] = {}
        self._values: dict[tuple, Any] = {}

    def _base(self, groups: tuple[str, ...]) -> tuple[DictConfig, dict]:
        if groups not in self._bases:
            from sweep.identity import to_dict

            cfg = compose(list(groups), self.config_dir, check=False)
            self._bases[groups] = (cfg, to_dict(cfg))
        return self._bases[groups]

    def _converted(self, groups: tuple[str, ...], axis: _Axis, i: int) -> Any:
        """The value a typed config stores for `key=value` (1 -> 1.0 for a float key, an enum's
        name, a merged dict), or a one-line ConfigError."""
        key = (groups, axis.key, axis.strings[i])
        if key not in self._values:
            from omegaconf import ListConfig
            from omegaconf.errors import OmegaConfBaseException

            cfg = copy.deepcopy(self._base(groups)[0])
            try:
                OmegaConf.update(cfg, axis.key, axis.values[i], merge=True, force_add=axis.free_form)
            except OmegaConfBaseException as exc:
                raise ConfigError(_explain(exc)) from None
            node = OmegaConf.select(cfg, axis.key)
            if isinstance(node, (DictConfig, ListConfig)):
                node = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
            elif hasattr(node, "name") and hasattr(node, "value"):  # an Enum, as to_container writes it
                node = node.name
            self._values[key] = node
        return self._values[key]

    def build(self, cell: list[tuple[_Axis, int]]) -> dict:
        groups = tuple(f"{a.key}={a.strings[i]}" for a, i in cell if a.group)
        values = [(a, i) for a, i in cell if not a.group]
        keys = [a.key for a, _ in values]
        if any(k != o and o.startswith(k + ".") for k in keys for o in keys):  # nested overrides: order matters
            cfg = compose(list(groups) + [a.override(i) for a, i in values], self.config_dir)
            from sweep.identity import to_dict

            return to_dict(cfg)
        d = copy.deepcopy(self._base(groups)[1])
        for a, i in values:
            _set_dotted(d, a.key, copy.deepcopy(self._converted(groups, a, i)))
        validate(_AttrView(d))
        return d


class _AttrView(dict):
    """A read-only attribute view of a plain config dict, so `validate` checks dicts and
    DictConfigs alike."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _AttrView(value) if isinstance(value, dict) else value

    def __getitem__(self, name: str) -> Any:
        value = dict.__getitem__(self, name)
        return _AttrView(value) if isinstance(value, dict) and not isinstance(value, _AttrView) else value

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        d = d.setdefault(part, {})
    d[last] = value


def is_sweep(override: str) -> bool:
    """Whether an override sweeps (a,b / range / glob / pow2), i.e. makes more than one cell."""
    try:
        return any(o.is_sweep_override() for o in override_parser().parse_overrides([override]))
    except Exception:  # noqa: BLE001 - unparsable overrides are reported by compose()
        return False


def effective_grid(merged: Sequence[str]) -> dict[str, str]:
    """The grid a run really belongs to, for its record's `grid` block: every sweep of the merged
    overrides (the experiment's `grid:` entries a command line did not replace, then the command
    line's). Without this a record kept the experiment's paper grid when a scale or the user swept
    other values (e.g. quick T_wrm 1,16,64 recorded as 1,64,256,1024)."""
    out = {}
    for o in merged:
        if is_sweep(o):
            key, value = o.split("=", 1)
            out[key.lstrip("+~")] = value
    return out


def _swept_keys(overrides: Iterable[str]) -> list[str]:
    keys = []
    for o in overrides:
        if is_sweep(o):
            key = o.split("=", 1)[0].lstrip("+~")
            group_keys = {"model", "param", "optimizer", "data", "cluster"}
            keys.append(f"{key}.name" if key in group_keys else key)
    return list(dict.fromkeys(keys))


def make_cohorts(runs: Sequence[RunSpec], max_size: Optional[int] = None) -> list[Cohort]:
    """Pack runs that share every shape into cohorts of at most `cohort.max_size` members.
    Deterministic: runs keep their grid order inside a cohort, cohorts are ordered by first run."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in runs:
        groups.setdefault(cohort_key(spec.config_dict()), []).append(spec)
    cohorts = []
    for key, members in groups.items():
        size = max_size or int(members[0].get("cohort.max_size"))
        for i in range(0, len(members), size):
            cohorts.append(Cohort(key, members[i:i + size]))
    return cohorts


# ----------------------------------------------------------------------------- until divergence
def line_key(cfg: Any) -> str:
    """Runs on one line of the lr axis share every config value except lr."""
    from sweep.identity import content_hash, drop_key, identity_dict

    d = identity_dict(cfg)
    drop_key(d, "lr")
    return content_hash(d)


def extend_until_divergence(runs: Sequence[RunSpec], outcomes: dict[str, Optional[str]]) -> list[RunSpec]:
    """The next lr points to try, given the outcomes known so far (run_id -> outcome or None).

    For each line: if no run has diverged or failed yet, add max(lr) * factor; if one has, add
    points above the first unstable lr until `margin` of them exist. Lines with pending runs wait;
    a line stops at `extend.max_points` lr values. Returns only runs not already in `runs`.
    """
    lines: dict[str, list[RunSpec]] = {}
    for spec in runs:
        if spec.get("extend.until_divergence"):
            lines.setdefault(line_key(spec.config_dict()), []).append(spec)
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


def until_divergence(runs: Sequence[RunSpec], sweep: Path,
                     train: Callable[[list[RunSpec]], Any]) -> list[RunSpec]:
    """Train `runs`, then keep adding the next lr of each growing line (extend_until_divergence,
    from the outcomes in the sweep's records) and training those, until no line grows. Returns all
    runs. `sweep run` trains in between; `sweep submit` passes a `train` that does nothing (a job
    array cannot wait for outcomes), so lines grow by what the records so far allow."""
    from sweep import store

    runs = list(runs)
    train(runs)
    while True:
        outcomes = {r.run_id: (store.read_record(sweep, r.run_id) or {}).get("outcome") for r in runs}
        new = extend_until_divergence(runs, outcomes)
        if not new:
            return runs
        runs += new
        train(new)


