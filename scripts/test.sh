#!/usr/bin/env bash
# The whole check: lint, types, tests with branch coverage (protocol and appliance cores held
# to 100%).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
$py -m ruff check .
$py -m ruff format --check .
$py -m mypy
$py -m coverage erase
$py -m coverage run -m pytest "$@"
$py -m coverage report --include='piagent/protocol/*,piagent/appliance/*' --fail-under=100
$py -m coverage report --skip-covered
