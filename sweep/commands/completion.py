"""`sweep completion bash|zsh`: print the shell's tab-completion script (subcommands, options, config keys,
group options such as `model=<TAB>` -> fcn wrn transformer). Load it from the shell's rc file:

    eval "$(sweep completion bash)"    # ~/.bashrc
    eval "$(sweep completion zsh)"     # ~/.zshrc, after compinit
"""
from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell: bash or zsh (eval \"$(sweep completion bash)\")")


def command(args: argparse.Namespace) -> int:
    from sweep.completion import script

    print(script(args.shell), end="")
    return 0
