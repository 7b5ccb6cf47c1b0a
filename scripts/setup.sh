#!/usr/bin/env bash
# Idempotent developer/CI setup: the Debian packages piagent needs to build and test, and .venv.
#   scripts/setup.sh          runtime + test dependencies (default)
#   scripts/setup.sh --run    runtime dependencies only
set -euo pipefail
cd "$(dirname "$0")/.."

extra="[test]"
[ "${1:-}" = "--run" ] && extra=""

# portaudio19-dev and libsystemd-dev: pyaudio and systemd-python compile against them.
# espeak-ng and sox: spoken prompts for the demo and speech fixtures for tests (the wake
# word's in tests/test_wake.py and scripts/bench_wake.py among them).
# libspeexdsp1: the speex echo canceller (piagent/audio/speexdsp.py loads it with ctypes).
# systemd and shellcheck: the tests verify and score the unit and lint the installer.
apt_packages=(python3-venv python3-dev gcc pkg-config portaudio19-dev libsystemd-dev
              libasound2-dev alsa-utils espeak-ng sox libspeexdsp1)
[ "$extra" = "[test]" ] && apt_packages+=(systemd shellcheck)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extra}"
echo "setup: ready (.venv)" >&2
