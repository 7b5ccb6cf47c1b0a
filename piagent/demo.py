"""``piagent demo``: the local agent and the daemon together, talking, with nothing to set up.

Owns the demo: a ``SimServer`` on a free local port, a config for it, the audio (the real
sound card where one can capture and play, else the WAV backend with a spoken prompt generated
here), and the display of the conversation as it happens (states, transcripts, latencies).

Headless (WAV), it runs a scripted exchange and exits: the agent greets, the user's recorded
question is spoken while the button is held, the agent answers, a typed message follows, and
the demo hangs up; the speaker's timeline is left in a WAV file to listen to. With a sound
card it is interactive: the terminal's space bar is the button, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TextIO

import numpy as np

from piagent.appliance.commands import ConversationBegan, ConversationEnded, StateEntered
from piagent.audio.resample import StreamResampler
from piagent.client import Announcement, TurnLatency
from piagent.config import Config, parse_config
from piagent.conversation import Line
from piagent.service import Daemon
from piagent.sim.server import SimServer
from piagent.sim.voice import synthesize

logger = logging.getLogger(__name__)

PROMPT_TEXT = "Hello there! Can you hear me? Please tell me how long I was talking."
TYPED_TEXT = "Thanks, that is all for now."
PROMPT_RATE = 16000
LEAD_IN_S = 8.0  # silence before the question: the greeting plays meanwhile


def spoken_prompt(text: str, path: Path) -> float:
    """Write ``text`` as 16 kHz 16-bit mono speech to ``path`` after ``LEAD_IN_S`` of silence;
    returns where the speech ends (s). espeak-ng speaks it; without it, the simulator's voice."""
    speech = _espeak(text)
    if speech is None:
        speech = np.asarray(synthesize(text, PROMPT_RATE).samples, dtype=np.int16)
    lead = np.zeros(int(LEAD_IN_S * PROMPT_RATE), dtype=np.int16)
    tail = np.zeros(PROMPT_RATE // 2, dtype=np.int16)
    _write_wav(path, np.concatenate([lead, speech, tail]), PROMPT_RATE)
    return LEAD_IN_S + len(speech) / PROMPT_RATE


def _espeak(text: str) -> np.ndarray | None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        try:
            subprocess.run([exe, "-v", "en", "-w", str(out), text], check=True, timeout=30)
            with wave.open(str(out), "rb") as wav:
                rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
                raw = wav.readframes(wav.getnframes())
        except (OSError, subprocess.SubprocessError, wave.Error) as exc:
            logger.warning("espeak-ng failed (%s); using a synthetic voice", exc)
            return None
    if width != 2 or channels != 1:
        return None
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    resampler = StreamResampler(rate, PROMPT_RATE)
    return np.concatenate([resampler.process(samples), resampler.flush()]).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def sound_card_available() -> bool:
    """True when PortAudio can open a capture and a playback stream (probed in a child
    process: a machine without ALSA configuration can abort the process inside PortAudio)."""
    probe = (
        "import pyaudio,sys\n"
        "p=pyaudio.PyAudio()\n"
        "ok=[]\n"
        "for kind in ('input','output'):\n"
        "    try:\n"
        "        s=p.open(rate=48000,channels=1,format=pyaudio.paInt16,**{kind:True});s.close()\n"
        "        ok.append(kind)\n"
        "    except Exception: pass\n"
        "sys.exit(0 if len(ok)==2 else 1)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def demo_config(port: int, workdir: Path, *, wav: bool) -> Config:
    """The daemon's config for the demo agent on ``port``."""
    audio: dict[str, object] = {"backend": "pyaudio"}
    if wav:
        audio = {
            "backend": "wav",
            "input": {"file": str(workdir / "prompt.wav")},
            "output": {"file": str(workdir / "speaker.wav"), "rate": 48000},
        }
    return parse_config(
        {
            "agent": {
                "agent_id": "demo",
                "server": f"ws://127.0.0.1:{port}",
                "api_base": f"http://127.0.0.1:{port}",
            },
            "audio": audio,
            "gpio": {"pin_factory": "mock", "keyboard": not wav},
            "control": {"socket": str(workdir / "control.sock")},
            "session": {"always_connected": wav, "idle_timeout": 60},
            "logging": {"level": "warning"},
        },
        source="<demo>",
    )


class Display:
    """Prints the conversation as it happens, one line per announcement, and counts agent turns."""

    LABELS: ClassVar[dict[str, str]] = {
        "agent": "agent:",
        "user": "you:",
        "turn": "latency:",
        "state": "[state]",
        "ended": "[ended]",
        "started": "[started]",
        "tool": "[tool]",
        "correction": "agent*:",
        "error": "[error]",
    }

    def __init__(self, out: TextIO, clock: Callable[[], float]) -> None:
        self._out = out
        self._clock = clock
        self._start = clock()
        self.turns = 0
        self._turn = asyncio.Event()

    def show(self, who: str, text: str) -> None:
        print(f"{self._clock() - self._start:6.1f}s  {who:<9} {text}", file=self._out, flush=True)

    def announce(self, announcement: Announcement) -> None:
        """A subscriber of the daemon's client: one line per announcement worth showing."""
        match announcement:
            case Line(kind=kind, text=text):
                self.show(self.LABELS.get(kind, kind), text)
            case StateEntered(state=state):
                self.show(self.LABELS["state"], state.value)
            case ConversationBegan(conversation_id=conversation_id):
                self.show(self.LABELS["started"], conversation_id)
            case ConversationEnded(ending=ending):
                self.show(self.LABELS["ended"], ending.describe())
            case TurnLatency(reply_ms=reply_ms, ping_ms=ping_ms):
                ping = f"{ping_ms} ms" if ping_ms is not None else "n/a"
                self.show(self.LABELS["turn"], f"reply {reply_ms or 0:.0f} ms, ping {ping}")
                self.turns += 1
                self._turn.set()
            case _:
                pass

    async def wait_turns(self, count: int) -> None:
        """Until ``count`` agent turns have been timed (first audio after the user's turn)."""
        while self.turns < count:
            self._turn.clear()
            await self._turn.wait()


async def _until_quiet(daemon: Daemon) -> None:
    while daemon.playback.is_playing:
        await daemon.playback.wait_drained()


async def _scripted(daemon: Daemon, display: Display, speech_end: float, started: float) -> None:
    """The headless exchange: the greeting, a question by voice and its answer, a typed
    message and its answer, then hang up."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, started + LEAD_IN_S - loop.time()))
    display.show("[button]", "pressed: the recorded question plays into the microphone")
    daemon.press()
    await asyncio.sleep(max(0.0, started + speech_end + 0.2 - loop.time()))
    daemon.release()
    display.show("[button]", "released")
    await display.wait_turns(1)
    await _until_quiet(daemon)
    display.show("[typed]", TYPED_TEXT)
    daemon.say(TYPED_TEXT)
    await display.wait_turns(2)
    await _until_quiet(daemon)
    daemon.hangup()
    await asyncio.sleep(0.5)


async def run_demo(
    *,
    port: int = 0,
    workdir: Path | None = None,
    wav: bool | None = None,
    duration: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo; returns the exit status (0 after a full exchange, or on Ctrl-C)."""
    loop = asyncio.get_running_loop()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="piagent-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if wav is None:
        wav = not sound_card_available()
    display = Display(out, loop.time)
    speech_end = spoken_prompt(PROMPT_TEXT, workdir / "prompt.wav") if wav else 0.0
    result = 0
    async with SimServer(port=port) as sim:
        daemon = Daemon(demo_config(sim.port, workdir, wav=wav))
        display.show("[demo]", f"local agent at {sim.ws_base}; files in {workdir}")
        if wav:
            display.show("[demo]", "no sound card: the microphone plays prompt.wav")
        else:
            display.show("[demo]", "space or enter: talk / stop; m: mute; h: hang up; Ctrl-C: quit")
        daemon.client.subscribe(display.announce)
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(daemon.run())
            try:
                async with asyncio.timeout(duration):
                    if wav:
                        await _scripted(daemon, display, speech_end, loop.time())
                    else:
                        await runner
            except TimeoutError:
                if wav:
                    display.show("[demo]", f"the exchange did not finish within {duration} s")
                    result = 1
            finally:
                daemon.request_stop()
                await runner
        summary = {"conversations": len(sim.conversations), "turns": display.turns}
        display.show("[demo]", "done " + json.dumps(summary))
        if wav:
            display.show("[demo]", f"hear the agent: aplay {workdir / 'speaker.wav'}")
    return result
