"""The transition table: illegal moves raise and change nothing; the README shows the table."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from piagent.appliance import TRANSITIONS, IllegalTransition, State, Trigger
from piagent.appliance.table import can, state_diagram, transition

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_a_move_the_table_lists_is_made() -> None:
    assert transition(State.BOOTING, Trigger.BOOTED) is State.READY
    assert can(State.READY, Trigger.DIAL)


def test_a_move_the_table_does_not_list_raises() -> None:
    assert not can(State.BOOTING, Trigger.DIAL)
    with pytest.raises(IllegalTransition, match="no transition from booting on dial"):
        transition(State.BOOTING, Trigger.DIAL)


def test_every_state_is_reachable_and_only_booting_has_no_way_in() -> None:
    targets = set(TRANSITIONS.values())
    assert set(State) - targets == {State.BOOTING}
    assert {trigger for _, trigger in TRANSITIONS} == set(Trigger)


def test_the_readme_diagram_is_generated_from_the_table() -> None:
    blocks = re.findall(r"```mermaid\n(.*?)\n```", README, flags=re.DOTALL)
    assert state_diagram() in blocks, "regenerate with: python -m piagent.appliance"


def test_python_m_prints_the_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_module("piagent.appliance", run_name="__main__")
    assert capsys.readouterr().out == state_diagram() + "\n"
