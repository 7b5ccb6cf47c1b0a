#!/usr/bin/env bash
# Run piagent's main job from the checkout: the daemon on the user's config when there is one
# ($PIAGENT_CONFIG, else /etc/piagent/config.yaml), otherwise the demo: the built-in local
# agent and the daemon together (headless: a scripted exchange; with a sound card: talk).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${PIAGENT_CONFIG:-/etc/piagent/config.yaml}"
if [ -r "$config" ]; then
    echo "run: piagent run --config $config" >&2
    exec .venv/bin/piagent run --config "$config" "$@"
fi
echo "run: no config at $config: running the demo agent (piagent demo)" >&2
exec .venv/bin/piagent demo "$@"
