#!/usr/bin/env bash
# Regenerate figure demo: demo.sh [hydra overrides...] [--submit | --plot-only] [--dry-run]
# (flags after the overrides). sweep/figures.py lists what it runs and draws; e.g. a CPU preview:
# demo.sh steps=200 --dry-run, or on SLURM: demo.sh cluster=slurm --submit
set -euo pipefail
exec sweep figures demo "$@"
