#!/usr/bin/env bash
# Regenerate figure fig4: fig4.sh [hydra overrides...] [--submit | --plot-only] [--dry-run]
# (flags after the overrides). sweep/figures.py lists what it runs and draws; e.g. a CPU preview:
# fig4.sh steps=200 --dry-run, or on SLURM: fig4.sh cluster=slurm --submit
set -euo pipefail
exec sweep figures fig4 "$@"
