"""The appliance core: the sans-I/O policy of the whole device (style.md, principle 13).

``table`` holds the states and their one transition table, ``events`` the typed inputs,
``commands`` the typed outputs and announcements, ``options`` the settings and the backoff,
``machine`` the ``Appliance`` that turns the one into the other; ``gestures`` reads the
push-to-talk button's edges and keys into the controls that drive it. Nothing here does I/O or
reads a clock; ``piagent.client`` and ``piagent.service`` run the commands and feed the events.
"""

from piagent.appliance.machine import Appliance, Link
from piagent.appliance.options import Backoff, Options
from piagent.appliance.table import TRANSITIONS, IllegalTransition, State, Trigger

__all__ = [
    "TRANSITIONS",
    "Appliance",
    "Backoff",
    "IllegalTransition",
    "Link",
    "Options",
    "State",
    "Trigger",
]
