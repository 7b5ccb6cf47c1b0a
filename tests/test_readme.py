"""README.md promises: the commands it gives exist, and its state diagram matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from piagent.protocol.session import state_diagram

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_state_diagram_matches_the_transition_table() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)\n```", README, flags=re.DOTALL)
    assert state_diagram() in blocks, "regenerate with: python -m piagent.protocol.session"


def test_readme_gives_the_setup_and_test_commands_that_ci_runs() -> None:
    assert "scripts/setup.sh && scripts/test.sh" in README
    assert "scripts/setup.sh --run && scripts/run.sh" in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/setup.sh\nscripts/test.sh" in ci or "scripts/setup.sh && scripts/test.sh" in ci
    for script in ("scripts/setup.sh", "scripts/test.sh", "scripts/run.sh", ".ci/run"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
