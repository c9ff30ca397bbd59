"""Shell tab completion: `sweep completion bash|zsh` prints a script that asks `sweep __complete WORDS...`.

`complete(words)` gets the words after `sweep`, the last one being the word under the cursor (maybe
empty), and returns the candidates: subcommands, a subcommand's options (and their choices), config
keys from the structured schema (sweep/config.py: `probe.` -> `probe.every=` ...; a group's keys follow
the option chosen on the line, `model=wrn model.<tab>` -> `model.widen=`), group options
(`model=` -> fcn, wrn, transformer; `experiment=` and `cluster=` -> the YAML files in sweep/conf),
enum and boolean values, and the values `validate()` allows. No candidates lets the shell complete
file names (sweep folders). It imports the schema (hydra's ConfigStore, ~0.1 s), never jax or pandas.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import re
import sys
import typing
from pathlib import Path

SHELLS = ("bash", "zsh")
GROUPS = ("model", "param", "optimizer", "data", "cluster", "experiment")
CONF_DIR = Path(__file__).resolve().parent / "conf"  # = sweep.grid.CONF_DIR (sweep.grid itself is slower to import)
OVERRIDE_COMMANDS = ("run", "submit")  # every positional is an override; `figures NAME overrides...`


def _filter(candidates, prefix: str) -> list[str]:
    return [c for c in dict.fromkeys(candidates) if c.startswith(prefix)]


# --------------------------------------------------------------------------- the config schema
def _group_options(group: str) -> dict[str, type]:
    """Option name -> its dataclass, for a group of the schema; YAML groups map to their file stems."""
    from sweep import config

    if group in ("cluster", "experiment"):
        return {p.stem: config.ClusterConfig if group == "cluster" else None
                for p in sorted((CONF_DIR / group).glob("*.yaml"))}
    options = {"model": config.MODEL_OPTIONS, "param": config.PARAM_OPTIONS,
               "optimizer": config.OPTIMIZER_OPTIONS, "data": config.DATA_OPTIONS}[group]
    return {name: (node if isinstance(node, type) else type(node)) for name, node in options.items()}


def _chosen(group: str, others: list[str]) -> str | None:
    """The group option chosen on the command line (last one wins), else the schema's default."""
    from sweep import config

    for word in reversed(others):
        key, sep, value = word.lstrip("+").partition("=")
        if sep and key == group and value and "," not in value and "(" not in value:
            return value
    for entry in config.Config().defaults:
        if isinstance(entry, dict) and group in entry:
            return entry[group]
    return None


def _hints(cls: type) -> dict[str, typing.Any]:
    from sweep import config

    return typing.get_type_hints(cls, vars(config))


def _node_class(path: list[str], others: list[str]) -> type | None:
    """The dataclass at a dotted path ([] = the top level); a group's is its chosen option's."""
    from sweep import config

    cls: type | None = config.Config
    for i, part in enumerate(path):
        if i == 0 and part in GROUPS:
            if part == "experiment":
                return None
            cls = _group_options(part).get(_chosen(part, others) or "") or _hints(config.Config).get(part)
            continue
        field_type = _hints(cls).get(part) if cls is not None else None
        cls = field_type if dataclasses.is_dataclass(field_type) else None
        if cls is None:
            return None
    return cls


def _unwrap(tp: typing.Any) -> typing.Any:
    """Optional[X] -> X."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def allowed_values() -> dict[str, tuple[str, ...]]:
    """key -> the values validate() accepts, read from its own messages (`f"KEY={...}: allowed A, B"`)."""
    import inspect

    from sweep import config

    found = {key: tuple(v.strip() for v in values.split(","))
             for key, values in re.findall(r'f"([\w.]+)=\{[^}]*\}: allowed ([\w]+(?:, [\w]+)*)"', inspect.getsource(config))}
    found.update({"mse_reduction": config.MSE_REDUCTIONS, "warmup_mode": config.WARMUP_MODES,
                  "data.standardize": config.STANDARDIZATIONS})
    return found


def key_candidates(prefix: str, others: list[str]) -> list[str]:
    """`key=` for values, `key.` for nested nodes; a group gives both (`model=` picks, `model.` sets)."""
    path = prefix.split(".")[:-1]
    cls = _node_class(path, others)
    if cls is None:
        return []
    head = "".join(p + "." for p in path)
    out = []
    if not path:
        out += [g + "=" for g in GROUPS]
    for field in dataclasses.fields(cls):
        if field.name in ("defaults", "grid") or field.name.startswith("_"):
            continue
        tp = _unwrap(_hints(cls).get(field.name))
        if dataclasses.is_dataclass(tp) or (not path and field.name in GROUPS):
            out.append(head + field.name + ".")
        else:
            out.append(head + field.name + "=")
    return _filter(out, prefix)


def value_candidates(key: str, others: list[str]) -> list[str]:
    """The values a key may take, where they are a closed set."""
    if key in GROUPS:
        return list(_group_options(key))
    allowed = allowed_values()
    if key in allowed:
        return list(allowed[key])
    path = key.split(".")
    cls = _node_class(path[:-1], others)
    tp = _unwrap(_hints(cls).get(path[-1])) if cls is not None else None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [str(m.value) for m in tp]
    if tp is bool:
        return ["true", "false"]
    return []


def complete_override(word: str, others: list[str]) -> list[str]:
    sign = re.match(r"\+\+|\+|~", word)
    sign = sign.group() if sign else ""
    body = word[len(sign):]
    key, sep, value = body.partition("=")
    if sep:
        return [f"{sign}{key}={v}" for v in _filter(value_candidates(key, others), value)]
    return [sign + k for k in key_candidates(body, others)]


# --------------------------------------------------------------------------- the command line
def _subparser(name: str) -> argparse.ArgumentParser:
    from sweep.cli import build_parser

    parser = build_parser([name])
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return action.choices[name]


def _takes_value(action: argparse.Action | None) -> bool:
    return action is not None and action.nargs != 0 and not isinstance(
        action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction))  # noqa: SLF001


def _positional_candidates(sub: str, index: int, word: str, others: list[str]) -> list[str]:
    if sub in OVERRIDE_COMMANDS:
        return complete_override(word, others)
    if sub == "figures":
        if index == 0:
            from sweep.figures import FIGURES

            return _filter(FIGURES, word)
        return complete_override(word, others)
    if sub == "completion":
        return _filter(SHELLS, word) if index == 0 else []
    if sub == "export":
        from sweep.commands.export import FORMATS

        return _filter(FORMATS, word) if index == 0 else []
    return []  # a sweep folder: the shell completes file names


def complete(words: list[str]) -> list[str]:
    from sweep.cli import SUBCOMMANDS

    words = list(words) or [""]
    word, before = words[-1], words[:-1]
    if not before:
        if word.startswith("-"):
            return _filter(["--help", "-h"], word)
        return _filter(SUBCOMMANDS, word)
    sub = before[0]
    if sub not in SUBCOMMANDS:
        return []
    parser = _subparser(sub)
    options = {s: a for a in parser._actions for s in a.option_strings}  # noqa: SLF001
    rest = before[1:]
    if rest and rest[-1] in options and _takes_value(options[rest[-1]]):  # `--kind <tab>`
        choices = options[rest[-1]].choices
        return _filter([str(c) for c in choices], word) if choices else []
    if word.startswith("-") and not (sub in OVERRIDE_COMMANDS + ("figures",) and "=" in word and not word.startswith("--")):
        flag, sep, value = word.partition("=")
        if sep and flag in options and options[flag].choices:
            return [f"{flag}={c}" for c in _filter([str(c) for c in options[flag].choices], value)]
        return _filter(sorted(options, key=lambda s: (not s.startswith("--"), s)), word)
    positionals, skip = [], False
    for w in rest:
        if skip:
            skip = False
        elif w.startswith("-"):
            skip = "=" not in w and _takes_value(options.get(w))
        else:
            positionals.append(w)
    return _positional_candidates(sub, len(positionals), word, positionals)


def main(words: list[str]) -> int:
    try:
        candidates = complete(words)
    except Exception:  # noqa: BLE001 - a completion must never print a traceback into the prompt
        return 1
    if candidates:
        sys.stdout.write("\n".join(candidates) + "\n")
    return 0


# --------------------------------------------------------------------------- the shell scripts
BASH = r'''# bash completion for `sweep` (from `sweep completion bash`); load it with
#   eval "$(sweep completion bash)"      # in ~/.bashrc
_sweep_complete() {
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a words
    read -r -a words <<< "$line"
    if [[ -z "$line" || "$line" =~ [[:space:]]$ ]]; then words+=(""); fi
    local cur="${words[${#words[@]}-1]}"
    local IFS=$'\n'
    local -a cands
    cands=($(command sweep __complete "${words[@]:1}" 2>/dev/null))
    # bash splits the word under the cursor at '=' and ':' (COMP_WORDBREAKS): reply with what follows
    local tail="${cur##*[=:]}"
    local prefix="${cur:0:${#cur}-${#tail}}"
    COMPREPLY=()
    local c
    for c in "${cands[@]}"; do COMPREPLY+=("${c#"$prefix"}"); done
    (( ${#cands[@]} )) || return 0    # nothing to offer (and no cands[-1] to read)
    local last="${cands[${#cands[@]}-1]}"
    if [[ "$last" == *= || "$last" == *. ]]; then
        compopt -o nospace 2>/dev/null   # `model=` / `probe.`: keep typing the value or the key
    fi
    return 0
}
complete -o default -o bashdefault -F _sweep_complete sweep
'''

ZSH = r'''#compdef sweep
# zsh completion for `sweep` (from `sweep completion zsh`); load it after compinit with
#   eval "$(sweep completion zsh)"       # in ~/.zshrc
_sweep() {
    local -a cands open closed
    local c
    cands=("${(@f)$(command sweep __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    cands=(${cands:#})
    if (( ${#cands} == 0 )); then
        _files
        return
    fi
    for c in $cands; do
        if [[ $c == *[=.] ]]; then open+=("$c"); else closed+=("$c"); fi
    done
    (( ${#open} )) && compadd -Q -S '' -- "${open[@]}"
    (( ${#closed} )) && compadd -Q -- "${closed[@]}"
}
compdef _sweep sweep
'''


def script(shell: str) -> str:
    return {"bash": BASH, "zsh": ZSH}[shell]
