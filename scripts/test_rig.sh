#!/usr/bin/env bash
# The platform tests: build (or reuse) the emulated Debian arm64 system, boot it with this
# checkout installed by scripts/install.sh, and run tests/rig against it (pytest marker rig).
#   scripts/test_rig.sh                      trixie (Debian 13, Python 3.13)
#   PIAGENT_RIG_RELEASE=bookworm scripts/test_rig.sh
#   PIAGENT_RIG_KEEP=1 scripts/test_rig.sh   leave the system up afterwards (rig.sh down)
# Extra arguments go to pytest (e.g. -k conversation).
set -euo pipefail
cd "$(dirname "$0")/.."
release="${PIAGENT_RIG_RELEASE:-trixie}"
started=0
if ! scripts/rig.sh status >/dev/null 2>&1; then
    # Before pytest: a build from nothing (about 10 min) and the install inside (about 5) must
    # not count against the first test's timeout.
    scripts/rig.sh up --release "$release"
    started=1
fi
rc=0
.venv/bin/python -m pytest -m rig tests/rig -v -rP "$@" || rc=$?
if [ "$started" = 1 ] && [ "${PIAGENT_RIG_KEEP:-0}" != 1 ]; then
    scripts/rig.sh down
fi
exit "$rc"
