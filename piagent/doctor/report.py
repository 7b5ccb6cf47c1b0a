"""A doctor check's result (:class:`Check`), the hints it carries, and the report.

Owns what a result is (ok, warn, fail or skip, with a detail and a hint), the wording of every
hint, the readable list and the JSON object, and the exit status derived from them. Pure: no
I/O, and nothing here knows how a check is made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from piagent.config import API_KEY_ENV, DEFAULT_CONFIG_PATH

EX_OK: Final = 0
EX_FAIL: Final = 1
EX_CONFIG: Final = 78

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Check:
    """One check's result: ``ok`` True, False, or None (skipped: not applicable or not tried).

    ``detail`` says what was found (it may span lines); ``hint`` what to do about a failure or
    a warning. A warning (``warning`` True, ``ok`` True) is a risk that does not fail the run.
    """

    name: str
    ok: bool | None
    detail: str
    hint: str = ""
    warning: bool = False

    @property
    def status(self) -> Status:
        """``ok``, ``warn``, ``fail`` or ``skip``, as the JSON report spells it."""
        if self.ok is None:
            return "skip"
        if not self.ok:
            return "fail"
        return "warn" if self.warning else "ok"


HINTS: Final = {
    "config": "fix what is named above, then check again with: piagent check-config {path}",
    "no config": "pass --config PATH or set $PIAGENT_CONFIG (install.sh writes "
    f"{DEFAULT_CONFIG_PATH})",
    "key unusable": "put the API key alone into {where}, readable by the user piagent runs as",
    "key mode": "chmod 600 {path} (and chown it to the user piagent runs as)",
    "key rejected": "check the key in {source}: create one in the ElevenLabs dashboard "
    "(Developers, API keys) with access to Agents, and store it alone",
    "key needed": f"store the agent's API key in agent.api_key_file (or ${API_KEY_ENV}); "
    "run as root, `sudo piagent doctor` sees the key the service gets from systemd",
    "agent id": "check agent.agent_id against the agent's ID in the ElevenLabs dashboard",
    "unreachable": "is the server running and reachable? check agent.server, the network and "
    "any firewall",
    "not a server": "is agent.server an ElevenLabs agents server (or piagent sim)?",
    "api base": "check the network and agent.api_base",
    "service": "the service may be having trouble: try again in a few minutes",
    "device": "set {key}.device (now {device!r}) to a name `piagent devices` lists (a USB card "
    "is often plughw:CARD=Device,DEV=0; `sudo piagent setup` picks one); check the cable, and "
    "that no other program (PulseAudio, PipeWire, another piagent) holds the device",
    "pyaudio": "reinstall piagent (install.sh installs portaudio19-dev and PyAudio), or use "
    "audio.backend: wav",
    "wav": "set {key}.file to a usable 16-bit mono WAV path",
    "silent mic": "digital silence: capture switch muted? run alsamixer (F6 picks the card, F4 "
    "shows capture), switch capture on and raise its level; try it with: arecord -f S16_LE -d 3 "
    "/tmp/test.wav",
    "silent wav": "{path} holds only silence: use a recording with sound in it",
    "clipping": "clipping: lower audio.input.gain_db (now {gain:g} dB) or the capture level in "
    "alsamixer",
    "gpio": "add the user piagent runs as to the gpio group (sudo usermod -aG gpio piagent, then "
    "restart it); make sure no other program uses BCM {pin}; off a Raspberry Pi, set "
    "gpio.pin_factory: mock",
    "group": "add the user to the group{s} {groups} (sudo usermod -aG {groups_csv} {user}), then "
    "log in again or restart the service",
    "unsynchronized": "TLS and signed URLs need the right time: check the network, then "
    "`timedatectl timesync-status`; turn syncing on with: sudo timedatectl set-ntp true",
    "unset clock": "a Pi has no battery clock: connect it to the network so that NTP sets the "
    'time, or set it by hand: sudo date -s "YYYY-MM-DD HH:MM"',
    "power save": "turn it off: sudo iw dev {iface} set power_save off (persist with "
    "NetworkManager: nmcli connection modify <name> 802-11-wireless.powersave 2)",
    "dns": "check the network connection and the DNS server (/etc/resolv.conf), and the host "
    "names in agent.server and agent.api_base",
    "certificate": "check the clock (see clock) and the CA certificates (sudo apt install "
    "ca-certificates), and whether a proxy or captive portal intercepts HTTPS",
    "tls": "check that the network lets outgoing TLS connections through (firewall, proxy)",
    "bug": "this is a bug in piagent doctor: please report it with this output",
}


def ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def skip(name: str, detail: str) -> Check:
    return Check(name, None, detail)


def fail(name: str, detail: str, hint: str, **fill: object) -> Check:
    return Check(name, False, detail, HINTS[hint].format(**fill))


def warn(name: str, detail: str, hint: str, **fill: object) -> Check:
    return Check(name, True, detail, HINTS[hint].format(**fill), warning=True)


def exit_status(checks: Sequence[Check]) -> int:
    """78 when the config check failed, 1 when another did, 0 otherwise (warnings pass)."""
    if any(c.name == "config" and c.ok is False for c in checks):
        return EX_CONFIG
    return EX_FAIL if any(c.ok is False for c in checks) else EX_OK


_LABELS: Final[dict[Status, str]] = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def format_report(checks: Sequence[Check]) -> str:
    """The readable list: status, name, detail, and for a failure or warning the hint after
    ``->``."""
    width = max((len(c.name) for c in checks), default=0)
    indent = " " * (4 + 2 + width + 2)
    lines = []
    for check in checks:
        first, *rest = check.detail.splitlines() or [""]
        lines.append(f"{_LABELS[check.status]:<4}  {check.name:<{width}}  {first}".rstrip())
        lines.extend(indent + line for line in rest)
        if check.status in ("fail", "warn") and check.hint:
            lines.append(f"{indent}-> {check.hint}")
    failed = sum(c.ok is False for c in checks)
    skipped = sum(c.ok is None for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    passed = len(checks) - failed - skipped - warned
    lines.append("")
    warnings = f"{warned} warned, " if warned else ""
    summary = f"{passed} ok, {warnings}{skipped} skipped, {failed} failed"
    if failed:
        lines.append(f"{summary}: see the hints above")
    else:
        lines.append(f"{summary}: see the warnings above" if warned else f"{summary}: all good")
    return "\n".join(lines) + "\n"


def format_json(checks: Sequence[Check]) -> str:
    """One JSON object: ``{"ok": bool, "checks": [{name, status, detail, hint}, ...]}``;
    ``ok`` is false only when a check failed (a warning keeps it true)."""
    document = {
        "ok": not any(c.ok is False for c in checks),
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "hint": c.hint} for c in checks
        ],
    }
    return json.dumps(document, indent=2) + "\n"
