#!/usr/bin/env bash
# Regenerate figure gilmer2: gilmer2.sh [hydra overrides...] [--submit | --plot-only] [--dry-run]
# (flags after the overrides). sweep/figures.py lists what it runs and draws; e.g. a CPU preview:
# gilmer2.sh steps=200 --dry-run, or on SLURM: gilmer2.sh cluster=slurm --submit
set -euo pipefail
exec sweep figures gilmer2 "$@"
