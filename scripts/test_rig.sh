#!/usr/bin/env bash
# The platform tests: build (or reuse) the emulated Debian arm64 system, boot it with this
# checkout installed by scripts/install.sh, and run tests/rig against it (pytest marker rig).
#   scripts/test_rig.sh                      trixie (Debian 13, Python 3.13)
#   PIAGENT_RIG_RELEASE=bookworm scripts/test_rig.sh
#   PIAGENT_RIG_KEEP=1 scripts/test_rig.sh   leave the system up afterwards (rig.sh down)
# Extra arguments go to pytest (e.g. -k conversation).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -m rig tests/rig -v -rP "$@"
