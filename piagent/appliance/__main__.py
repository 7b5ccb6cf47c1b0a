"""``python -m piagent.appliance``: print the appliance's state diagram (README.md shows it)."""

from piagent.appliance.table import state_diagram

print(state_diagram())
