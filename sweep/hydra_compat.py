"""Hydra habits in `sweep run` / `sweep submit`, and the glue behind Hydra's own entry point.

* `hydra.*` overrides (`translate`): the ones with a meaning here are mapped onto sweep's keys,
  every other one is refused in one line (a ConfigError), never dropped:

  | Hydra override                          | here                                                     |
  |-----------------------------------------|----------------------------------------------------------|
  | `hydra.sweep.dir=DIR`, `hydra.run.dir=DIR` | the sweep folder: `results_dir=dirname(DIR) sweep_name=basename(DIR)` |
  | `hydra.job.chdir=false`                 | accepted (sweep never changes directory); `true` refused |
  | `hydra.mode=MULTIRUN`                   | accepted (a grid is a multirun)                          |
  | `hydra/sweeper=basic`                   | accepted (grids are the basic sweeper's cartesian product) |
  | `hydra/launcher=basic`                  | run: accepted (this process); submit: `cluster=local`    |
  | `hydra/launcher=submitit_local`         | run: refused, use `sweep submit`; submit: `cluster=submitit_local` |
  | `hydra/launcher=submitit_slurm`         | run: refused, use `sweep submit`; submit: `cluster=slurm` |
  | `hydra.launcher.KEY=V`                  | submit: `cluster.KEY=V` for KEY in LAUNCHER_KEYS; run: refused |

* `-m/--multirun` (a no-op: a grid is already a multirun) and `--cfg job|all [--cell N|RUN_ID]`
  (`add_arguments`, `handle`): print each cell's composed config as YAML, as Hydra's `--cfg` does,
  and train nothing; `--cfg hydra` says why it does not apply.

* `python -m sweep.train -m ...` (sweep/train.py + hydra_plugins/sweep_grid_sweeper): `install_pow2`
  teaches Hydra's override parser `pow2(...)`, `register_train_config` is the entry point's primary
  config (the sweep_grid sweeper, no chdir, Hydra's outputs under the results folder),
  `grid_jobs` turns a grid into one override list per run for Hydra's launchers, and `run_job`
  trains one of them as a one-run cohort (same run id and record as `sweep run`).

Imports stay light at module level: `sweep --help` imports this module.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path, PurePath
from typing import Any, Callable, Optional, Sequence

# hydra.launcher.KEY (hydra-submitit-launcher's names) that mean the same as cluster.KEY here
LAUNCHER_KEYS = ("partition", "account", "qos", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
                 "array_parallelism", "setup", "signal_delay_s", "max_num_timeout")
# hydra/launcher=NAME -> cluster preset (sweep submit)
LAUNCHERS = {"basic": "local", "submitit_local": "submitit_local", "submitit_slurm": "slurm"}
HONOURED_COMMON = "hydra.sweep.dir, hydra.run.dir, hydra.job.chdir=false, hydra.mode=MULTIRUN, hydra/sweeper=basic"
HONOURED = f"{HONOURED_COMMON}, hydra/launcher=basic|submitit_local|submitit_slurm"  # sweep submit's
HONOURED_RUN = f"{HONOURED_COMMON}, hydra/launcher=basic"  # sweep run trains in its own process
GROUP_KEYS = ("model", "param", "optimizer", "data", "cluster")


def _error(message: str) -> Exception:
    from sweep.config import ConfigError

    return ConfigError(message)


# ----------------------------------------------------------------------------- hydra.* overrides
def is_hydra_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _quote(value: str) -> str:
    """A string as a quoted Hydra override value."""
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _user_value(overrides: Sequence[str], key: str) -> Optional[str]:
    """The (unquoted) value the user set for `key` among plain overrides, or None."""
    for o in overrides:
        k, sep, v = o.partition("=")
        if sep and k.lstrip("+") == key:
            return v.strip().strip("'\"")
    return None


def _map_override(o: str, key: str, value: Any, text: str, command: str, put: Callable[[str, str, str], None]) -> None:
    """Map one parsed `hydra.*` / `hydra/...` override onto sweep keys (`put`), or refuse it in one line."""
    from sweep.config import SWEEP_NAME

    submit = command == "submit"
    if key in ("hydra.sweep.dir", "hydra.run.dir"):
        folder = str(value)
        if "${" in folder:
            raise _error(f"'{o}': interpolations such as ${{now:...}} are not supported: a sweep's folder must "
                         f"stay the same so that re-running it skips finished runs")
        path = PurePath(folder)
        if not re.fullmatch(SWEEP_NAME, path.name):
            raise _error(f"'{o}': the folder's last part is the sweep's name and must be a plain folder name "
                         f"(e.g. {key}=/scratch/sweeps/demo)")
        put("results_dir", str(path.parent), o)
        put("sweep_name", path.name, o)
    elif key == "hydra.job.chdir":
        if value not in (False, "false", "False"):
            raise _error(f"'{o}': sweep never changes the working directory (relative data.path and "
                         f"results_dir stay relative to where you start it); only hydra.job.chdir=false applies")
    elif key == "hydra.mode":
        if str(value).upper() != "MULTIRUN":
            raise _error(f"'{o}': a grid is always a multirun here; only hydra.mode=MULTIRUN applies")
    elif key == "hydra/sweeper":
        if value not in ("basic", "sweep_grid"):
            raise _error(f"'{o}': sweep {command} expands grids (the basic sweeper's cartesian product, plus "
                         f"pow2 and experiment grids); other sweepers work with Hydra's own entry point: "
                         f"python -m sweep.train -m {o} ...")
    elif key == "hydra/launcher":
        if value not in LAUNCHERS:
            raise _error(f"'{o}': unknown launcher here; hydra/launcher=basic|submitit_local|submitit_slurm map to "
                         f"sweep submit's cluster=local|submitit_local|slurm (or use python -m sweep.train -m {o})")
        if submit:
            put("cluster", LAUNCHERS[value], o)
        elif value != "basic":
            raise _error(f"'{o}': sweep run trains in this process; to queue the grid through submitit use "
                         f"sweep submit cluster={LAUNCHERS[value]} ... (or sweep submit {o} ...)")
    elif key.startswith("hydra.launcher."):
        name = key[len("hydra.launcher."):]
        if not submit:
            raise _error(f"'{o}': sweep run trains in this process; launcher settings apply to sweep submit "
                         f"(as cluster.{name if name in LAUNCHER_KEYS else 'KEY'}=...)")
        if name not in LAUNCHER_KEYS:
            raise _error(f"'{o}': no such cluster setting here; sweep submit takes cluster.KEY for KEY in "
                         f"{', '.join(LAUNCHER_KEYS)}; any other sbatch option is cluster.additional_parameters.OPTION=VALUE "
                         f"(e.g. cluster.additional_parameters.constraint=a100)")
        put(f"cluster.{name}", text, o)
    else:
        raise _error(f"'{o}': not supported by sweep {command} (it honours {HONOURED if submit else HONOURED_RUN}"
                     f"{', hydra.launcher.KEY' if submit else ''}); for Hydra's own behaviour use "
                     f"python -m sweep.train -m ...")

def translate(overrides: Sequence[str], command: str) -> list[str]:
    """`overrides` with every `hydra.*`/`hydra/...` override mapped onto sweep's keys (see the
    module doc) or refused with a one-line ConfigError naming what is honoured."""
    plain = [o for o in overrides if not is_hydra_override(o)]
    hydra_overrides = [o for o in overrides if is_hydra_override(o)]
    if not hydra_overrides:
        return list(overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    mapped: dict[str, tuple[str, str]] = {}  # sweep key -> (override value, the hydra override it came from)

    def put(key: str, value: str, source: str) -> None:
        if key in mapped and mapped[key][0] != value:
            raise _error(f"'{source}' and '{mapped[key][1]}' disagree ({key}={value} vs {key}={mapped[key][0]})")
        mapped[key] = (value, source)

    parser = OverridesParser.create()
    for o in hydra_overrides:
        try:
            ov = parser.parse_overrides([o])[0]
        except HydraException as exc:
            from sweep.grid import parse_error_message

            raise _error(parse_error_message(exc, [o])) from None
        key, value = ov.key_or_group, ov.value()
        if ov.is_delete():
            raise _error(f"'{o}': deleting Hydra settings is not supported here (honoured: "
                         f"{HONOURED if command == 'submit' else HONOURED_RUN})")
        if ov.is_sweep_override():
            raise _error(f"'{o}': Hydra's own settings cannot be swept")
        text = o.split("=", 1)[1] if "=" in o else ""
        _map_override(o, key, value, text, command, put)
    out = list(plain)
    for key, (value, source) in mapped.items():
        given = _user_value(plain, key)
        if given is None:
            out.append(f"{key}={_quote(value) if key in ('results_dir', 'sweep_name') else value}")
        elif (PurePath(given) != PurePath(value)) if key == "results_dir" else given != value.strip("'\""):
            raise _error(f"'{source}' means {key}={value} but the command line also sets {key}={given}; keep one")
    return out


# ----------------------------------------------------------------------------- -m and --cfg
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`-m/--multirun`, `--cfg job|hydra|all` and `--cell` on `sweep run` and `sweep submit`."""
    parser.add_argument("-m", "--multirun", action="store_true",
                        help="accepted for Hydra habits; a grid is always a multirun here (no effect)")
    parser.add_argument("--cfg", choices=("job", "hydra", "all"), default=None,
                        help="print the composed config of each cell (or of --cell) as YAML, as Hydra does; "
                             "train nothing. 'all' adds the Hydra settings that apply here")
    parser.add_argument("--cell", default=None, metavar="N|RUN_ID",
                        help="with --cfg: only this cell (its #N in the --dry-run listing, or its run id or a "
                             "unique prefix of it)")


def _sweep_values(override: str) -> list[str]:
    """The value(s) an override sets, as strings (every value of a sweep); [] when it does not parse
    (the grid reports that in its own words)."""
    from hydra.errors import HydraException

    from sweep.grid import override_parser

    try:
        (ov,) = override_parser().parse_overrides([override])
    except HydraException:
        return []
    if ov.is_sweep_override() and ov.is_discrete_sweep():
        return [str(v) for v in ov.sweep_string_iterator()]
    return [ov.get_value_element_as_str()]


def _in_process(executor: str) -> bool:
    from sweep.dispatch import backends

    return backends.get(executor).in_process


def _preset_in_process(preset: str) -> bool:
    """Whether a cluster preset (conf/cluster/NAME.yaml, its defaults followed) runs its tasks here."""
    from sweep.grid import compose

    if preset == "local":  # the default: no composition to pay for
        return True
    return _in_process(str(compose([f"cluster={preset}"], check=False).cluster.executor))


def refuse_remote_cluster(overrides: Sequence[str]) -> None:
    """`sweep run` trains in this process whatever the cluster says: `cluster=slurm` used to train
    locally for as long as the grid takes, without a word. A cluster whose executor is not `local`
    (a preset such as slurm or submitit_local, or cluster.executor=...) is refused in one line
    pointing to `sweep submit`, as hydra/launcher=submitit_slurm is (`translate`)."""
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+")
        if key == "cluster":
            remote = [v for v in _sweep_values(o) if not _preset_in_process(v)]
        elif key == "cluster.executor":
            remote = [v for v in _sweep_values(o) if not _in_process(v)]
        else:
            continue
        if remote:
            target = o if len(remote) == len(_sweep_values(o)) else f"{key}={remote[0]}"
            raise _error(f"'{o}': sweep run trains in this process (cluster=local); to queue the grid on "
                         f"{remote[0]} use sweep submit {target} ... instead")


def handle(args: argparse.Namespace, command: str) -> Optional[int]:
    """At the start of `sweep run/submit`: map `hydra.*` overrides (in place), refuse a remote
    cluster under `sweep run`, and answer `--cfg`. Returns an exit code when the command is done
    (`--cfg`), None to go on."""
    args.overrides = translate(args.overrides, command)
    if command == "run":
        refuse_remote_cluster(args.overrides)
    cfg = getattr(args, "cfg", None)
    cell = getattr(args, "cell", None)
    if cfg is None:
        if cell is not None:
            raise _error(f"--cell {cell} selects which config --cfg prints; add --cfg job")
        return None
    if cfg == "hydra":
        raise _error(f"--cfg hydra does not apply: sweep {command} composes no Hydra config of its own "
                     f"(hydra.sweep.dir/hydra.run.dir map to results_dir/sweep_name); use --cfg job or --cfg all, "
                     f"or python -m sweep.train --cfg hydra for Hydra's")
    from sweep.grid import expand

    print_cfg(expand(args.overrides), cfg, cell)
    return 0


def ordered(runs: Sequence[Any]) -> list[Any]:
    """Runs in the order `--dry-run` numbers them (#N): cohort by cohort."""
    from sweep.grid import make_cohorts

    return [r for c in make_cohorts(runs) for r in c.runs]


def select(runs: Sequence[Any], cell: Optional[str]) -> list[tuple[int, Any]]:
    numbered = list(enumerate(ordered(runs)))
    if cell is None:
        return numbered
    text = str(cell).strip()
    if text.isdigit() and len(text) < 16:
        i = int(text)
        if i >= len(numbered):
            raise _error(f"--cell {i}: the grid has {len(numbered)} run{'s' if len(numbered) != 1 else ''} "
                         f"(#0..#{len(numbered) - 1}); --dry-run lists them")
        return [numbered[i]]
    hits = [(i, r) for i, r in numbered if r.run_id.startswith(text.lower())] if len(text) >= 4 else []
    if len(hits) != 1:
        what = "matches no run" if not hits else f"matches {len(hits)} runs"
        raise _error(f"--cell {text}: {what} of this grid; give #N from --dry-run or a run id (at least 4 characters)")
    return hits


def cell_yaml(spec: Any, with_hydra: bool = False) -> str:
    """The composed config of one cell as YAML (OmegaConf's, as Hydra's `--cfg job` prints it)."""
    from omegaconf import OmegaConf

    from sweep import store

    d = spec.config_dict()
    d.pop("defaults", None)
    if with_hydra:
        sweep = store.sweep_dir(d["results_dir"], d["sweep_name"])
        d["hydra"] = {"run": {"dir": str(store.run_dir(sweep, spec.run_id))}, "sweep": {"dir": str(sweep)},
                      "job": {"chdir": False}, "mode": "MULTIRUN"}
    return OmegaConf.to_yaml(OmegaConf.create(d))


def print_cfg(runs: Sequence[Any], which: str, cell: Optional[str] = None) -> None:
    """Each selected cell as a YAML document headed by a comment `# #N RUN_ID : swept values`."""
    chosen = select(runs, cell)
    for n, (i, spec) in enumerate(chosen):
        if n:
            sys.stdout.write("---\n")
        values = " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.grid.items())
        sys.stdout.write(f"# #{i} {spec.run_id} : {values}".rstrip() + "\n")
        sys.stdout.write(cell_yaml(spec, with_hydra=which == "all"))
    sys.stdout.flush()


# ----------------------------------------------------------------------------- Hydra's entry point
def pow2_function():
    """The grid's `pow2(start, stop[, step])` (2^x sweep), as registered in its override parser."""
    from sweep.grid import override_parser

    return override_parser().functions.functions["pow2"]


def install_pow2() -> None:
    """Make Hydra's own override parser (OverridesParser.create, used by @hydra.main and its
    sweepers) know `pow2(...)`. Idempotent."""
    from hydra.core.override_parser import overrides_parser as op

    if getattr(op.create_functions, "_sweep_pow2", False):
        return
    pow2 = pow2_function()  # before patching: sweep.grid builds its parser from the original
    original = op.create_functions

    def create_functions():
        functions = original()
        if "pow2" not in functions.functions:
            functions.register(name="pow2", func=pow2)
        return functions

    create_functions._sweep_pow2 = True  # type: ignore[attr-defined]
    op.create_functions = create_functions


TRAIN_CONFIG = "sweep_train"
HYDRA_OUTPUTS = "${results_dir}/${sweep_name}/hydra/${now:%Y-%m-%d_%H-%M-%S}"


def register_train_config(conf_dir: Path) -> None:
    """The primary config of `python -m sweep.train`: conf/config.yaml plus Hydra settings: the
    sweep_grid sweeper (experiment grids and pow2, one job per run), no chdir, and Hydra's own
    outputs (.hydra/, logs, multirun.yaml) under the sweep folder instead of ./outputs."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=TRAIN_CONFIG, node={
        "defaults": ["config", {"override hydra/sweeper": "sweep_grid"}, "_self_"],
        "hydra": {
            "searchpath": [f"file://{conf_dir}"],
            "job": {"chdir": False},
            "run": {"dir": HYDRA_OUTPUTS},
            "sweep": {"dir": HYDRA_OUTPUTS, "subdir": "${hydra.job.num}"},
        },
    })


def _value_string(value: Any) -> str:
    """A plain config value as a Hydra override value that parses back to it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_value_string(v)}" for k, v in value.items()) + "}"
    return _quote(str(value))


def grid_jobs(arguments: Sequence[str]) -> tuple[list[Any], list[list[str]]]:
    """A grid (command-line overrides, sweeps included, plus the experiment's `grid:` block) as
    (runs from sweep.grid.expand, one override list per run for Hydra's launchers). Each list is the
    fixed command-line overrides plus every swept/grid key set to the run's value, plus
    `hydra.sweeper.run_id` and `hydra.sweeper.grid_keys` for the job (checked and recorded there)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from sweep.grid import expand, normalize_overrides, parse_error_message
    from sweep.identity import get_dotted

    install_pow2()
    overrides = normalize_overrides(arguments)
    runs = expand(overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise _error(parse_error_message(exc, overrides)) from None
    fixed = [o for o, p in zip(overrides, parsed) if not p.is_sweep_override()]
    swept = [p.get_key_element() for p in parsed if p.is_sweep_override()]
    if "experiment" in swept:
        raise _error("sweeping experiment=... is not supported: run one experiment per command (its grid: block "
                     "is expanded)")
    cli_keys = {p.get_key_element() for p in parsed}
    jobs = []
    for spec in runs:
        d = spec.config_dict()
        keys = [k for k in (d.get("grid") or {}) if k not in cli_keys] + swept
        cell = list(fixed)
        for key in dict.fromkeys(keys):
            if key in GROUP_KEYS:
                cell.append(f"{key}={get_dotted(d, key + '.name')}")
            else:
                cell.append(f"{key}={_value_string(get_dotted(d, key))}")
        grid_keys = ",".join(_quote(k) for k in spec.grid)
        cell += [f"hydra.sweeper.run_id={_quote(spec.run_id)}", f"hydra.sweeper.grid_keys=[{grid_keys}]",
                 f"hydra.sweeper.grid_block={_quote(json.dumps(d.get('grid') or {}, sort_keys=True))}"]
        jobs.append(cell)
    return runs, jobs


def override_grid_keys(task_overrides: Sequence[str]) -> list[str]:
    """The grid keys of a job that no sweep_grid sweeper described: without -m (one run per call,
    e.g. a shell loop over lr, aggregated like a grid) or under another sweeper, a job cannot tell
    swept keys from fixed ones, so every non-execution override counts (`param=mup` -> `param.name`)."""
    from sweep.config import EXECUTION_KEYS

    keys = []
    for o in task_overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0] in EXECUTION_KEYS or key.startswith("hydra") or key == "experiment":
            continue
        keys.append(f"{key}.name" if key in GROUP_KEYS else key)
    return keys


def run_job(cfg: Any) -> Optional[float]:
    """One Hydra job of `python -m sweep.train`: train its run as a one-run cohort through
    runner.run_cohort (the record `sweep run` writes) and return its best test accuracy."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import to_absolute_path
    from omegaconf import OmegaConf

    from sweep import store
    from sweep.config import validate
    from sweep.grid import Cohort, RunSpec
    from sweep.identity import cohort_key, get_dotted, run_id, to_dict
    from sweep.runner import run_cohort

    hc = HydraConfig.get()
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, False)
    validate(cfg)
    d = to_dict(cfg)
    multirun = hc.mode == RunMode.MULTIRUN
    ours = str(OmegaConf.select(hc, "sweeper._target_", default="")).endswith("SweepGridSweeper")
    block = dict(d.get("grid") or {})
    if block and not (multirun and ours):
        how = "add -m" if not multirun else "keep the default sweeper (hydra/sweeper=sweep_grid)"
        raise _error(f"this experiment is a grid ({', '.join(f'{k}={v}' for k, v in block.items())}); {how} to run "
                     f"it, or use sweep run")
    if multirun and ours:
        grid_keys = list(hc.sweeper.grid_keys or [])
        block_json = OmegaConf.select(hc, "sweeper.grid_block", default=None)
        if block_json:  # the grid really expanded (sweep.grid.effective_grid), as `sweep run` records it
            cfg.grid = json.loads(str(block_json))
            d = to_dict(cfg)
    else:
        grid_keys = override_grid_keys(list(hc.overrides.task))
    spec = RunSpec(run_id(cfg), cfg, {k: get_dotted(d, k) for k in grid_keys})
    if not (multirun and ours):  # a grid's jobs were warned about once, when the sweeper expanded it
        from sweep.grid import warn_short_warmup

        warn_short_warmup([spec])
    expected = OmegaConf.select(hc, "sweeper.run_id", default=None) if ours else None
    if expected and str(expected) != spec.run_id:
        raise RuntimeError(f"this job composed run {spec.run_id} but the grid expanded it as {expected}: "
                           f"a bug in the sweep_grid sweeper; please report it with the overrides")
    sweep = store.sweep_dir(to_absolute_path(str(cfg.results_dir)), str(cfg.sweep_name))
    store.check_writable(sweep)
    records = run_cohort(Cohort(cohort_key(cfg), [spec]), sweep, force=bool(cfg.force))
    record = records[0] if records else (store.read_record(sweep, spec.run_id) or {})
    print(f"{spec.run_id} {record.get('outcome', 'held by another process')} -> {store.run_dir(sweep, spec.run_id)}")
    return (record.get("summary") or {}).get("best_test_acc")
