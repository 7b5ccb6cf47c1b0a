"""The whole audio chain through the real PortAudio/ALSA path, against the simulator.

The ALSA fake card of testing.md (tests/audio/alsa.py) stands in for the sound card, given a
clock by threads that feed or drain its FIFOs in real time; a real ``Microphone`` or
``Speaker`` (48 kHz) and ``Playback`` connect it to a real ``AgentClient`` talking to an
in-process ``SimServer``. What is checked is the issue's acceptance:

1. Capture at 48 kHz, streamed as ``pcm_16000``: the audio the simulator received equals the
   one-shot ``StreamResampler(48000, 16000)`` of what the microphone captured, within 1 LSB,
   with exactly the sample count the streaming rule gives (the resampler's delay short of the
   one-shot length: the client streams and never flushes the microphone's resampler).
2. Playback of ``pcm_22050``, ``pcm_24000`` and ``ulaw_8000`` at 48 kHz: what the speaker
   wrote equals the one-shot ``StreamResampler(rate, 48000)`` of the agent audio the simulator
   sent, within 1 LSB, all of it, and nothing else was played. The client flushes the
   resampler at the end of a turn (``is_final``), so its last samples play too, also when the
   turn ends mid-sound (the ``abrupt-end`` case).
3. A barge-in flushes: the first period the device asks for after the press is silent, and
   so is everything after it, although the simulator goes on sending the old turn (it never
   hears of the press); the played part is the turn's start, as the one-shot resampling has
   it, and the flushed part is exactly the rest of what had arrived. That period comes within
   one wake-up of the device (this card wakes it every two periods: a page of its FIFO holds
   two) plus the reader's tick; the ear hears the silence later by what the card buffers (the
   FIFO and ALSA's buffer), measured and reported.

As in test_devices.py, each PortAudio scenario runs in a child process (``ALSA_CONFIG_PATH``
must be set before PortAudio starts; a stream blocked on a FIFO cannot hang pytest), which
writes its recordings as .npy files and prints its figures as JSON; the parent asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import signal

from piagent.audio.codecs import Samples, decode_audio
from piagent.audio.devices import Microphone, Speaker
from piagent.audio.playback import Playback
from piagent.audio.resample import StreamResampler
from piagent.client import AgentClient, ClientOptions
from piagent.config import AudioInputConfig, AudioOutputConfig
from piagent.protocol.messages import (
    Audio,
    AudioFormat,
    ConversationInitiationClientData,
    parse_server,
)
from piagent.sim.agent import AgentDefinition
from piagent.sim.record import ConversationRecord
from piagent.sim.server import SimServer
from piagent.transport import Endpoint
from tests.audio.alsa import FakeCard, Fifo, write_fake_card
from tests.audio.child import Scenarios

Json = dict[str, Any]

RATE = 48000  # both devices
PERIOD = RATE // 50  # 20 ms: the microphone's frame and the speaker's period
PERIOD_S = PERIOD / RATE
TICK_S = 0.005  # how often the speaker's reader drains the FIFO: its jitter
# The speaker FIFO's capacity: four pages (170.7 ms here). A page holds two periods, and the
# device can only refill one once the ear has read all of it: a smaller pipe runs dry at the
# least hiccup of a loaded machine.
PIPE_BYTES = 16384
SLACK_S = 0.025  # scheduling on a loaded 2-core machine
# Margins against a loaded machine: agent audio comes twice as fast as it plays (the sim's
# default is 1.5), and playback waits for 200 ms of it (the default is 60) before starting, so
# a hiccup of the loop does not starve the speaker mid-turn (an underrun inserts silence).
AUDIO_PACE = 2.0
JITTER_MS = 200
AGENT_ID = "chain"
CAPTURE_SECONDS = 3.0  # a whole number of frames
PLAYBACK_TEXT = "Testing the speaker, one two three."  # ends in a pause, as speech does
ABRUPT_TEXT = "Testing the speaker, one two three"  # ends mid-sound: nothing of it is silent
LONG_TEXT = "This is a long agent turn, so the user can barge in while it plays."
PRESS_AFTER_S = 1.0  # of the long turn heard before the press


def speech_like(seconds: float, rate: int = RATE, seed: int = 1) -> Samples:
    """A few seconds of speech-like int16: harmonics of a gliding 140 Hz pitch with two
    formant peaks, a 2.5 Hz syllable envelope that never falls silent, and noise."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    pitch = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = np.zeros(n)
    for k in range(1, 24):
        f = 140 * k
        weight = np.exp(-(((f - 700) / 250) ** 2)) + 0.6 * np.exp(-(((f - 1800) / 400) ** 2))
        voiced += (0.15 + weight) / k * np.sin(k * phase)
    voiced /= np.abs(voiced).max()
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    rng = np.random.default_rng(seed)
    x = 12000 * envelope * voiced + rng.normal(0, 600, n)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def one_shot(samples: Samples, src_rate: int, dst_rate: int) -> Samples:
    """The reference: the whole signal through one resampler, then its flush."""
    resampler = StreamResampler(src_rate, dst_rate)
    return np.concatenate([resampler.process(samples), resampler.flush()]).astype(np.int16)


def streamed_count(n: int, src_rate: int, dst_rate: int) -> int:
    """Samples a stream emits for ``n`` inputs without a flush (resample.py's counting rule)."""
    return len(StreamResampler(src_rate, dst_rate).process(np.zeros(n, dtype=np.int16)))


def max_lsb(a: Samples, b: Samples) -> int:
    assert len(a) == len(b)
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max(initial=0))


def locate(recording: Samples, reference: Samples, template_s: float = 0.1) -> int:
    """Where ``reference`` starts in ``recording``: the peak of the cross-correlation with the
    reference's first loud ``template_s`` (its position in the reference subtracted)."""
    first = int(np.argmax(np.abs(reference) > 1000))
    template = reference[first : first + round(template_s * RATE)].astype(np.float64)
    score = signal.correlate(recording.astype(np.float64), template, mode="valid", method="fft")
    return int(np.argmax(score)) - first


# ----------------------------------------------------------------------------------------------
# Running scenarios in a child process

scenarios = Scenarios(__name__, level=logging.INFO)
scenario = scenarios  # the decorator that registers a scenario


def run_child(card: FakeCard, name: str, out: Path, timeout: float = 40, **args: Any) -> Json:
    result, _stderr = scenarios.spawn(card, name, timeout=timeout, out=str(out), **args)
    return result


def problems(result: Json) -> list[str]:
    """piagent's warnings and errors in a child: a device lost, a conversation failing."""
    return [f"{level}: {message}" for level, message in result["logs"] if level != "INFO"]


# ----------------------------------------------------------------------------------------------
# The fake card's clock (threads in the child)


class Mouth:
    """Speaks into the microphone FIFO: one period at a time, each when it is due."""

    def __init__(self, fifo: Fifo, samples: Samples) -> None:
        self._fifo = fifo
        self._samples = samples
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mouth", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(2)

    def _run(self) -> None:
        start = time.monotonic()
        for i, at in enumerate(range(0, len(self._samples), PERIOD)):
            if self._stop.wait(max(0.0, start + i * PERIOD_S - time.monotonic())):
                return
            self._fifo.write(self._samples[at : at + PERIOD])
        self.done.set()


class Ear:
    """Listens to the speaker FIFO as a sound card plays: every ``TICK_S`` it reads exactly
    what real time has made due since ``start``. ``log`` says when each byte was read. A
    device that falls behind would leave the card without data: counted in ``short_ticks``
    (and the schedule moves on, as the card would have played silence)."""

    def __init__(self, fifo: Fifo) -> None:
        self._fifo = fifo
        self._lock = threading.Lock()
        self._data = bytearray()
        self.log: list[tuple[float, int]] = []  # (monotonic time, bytes read by then)
        self.heard = 0  # samples read
        self.first_sound: int | None = None  # the first sample that is not zero
        self.short_ticks = 0
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ear", daemon=True)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(2)

    def _run(self) -> None:
        total = 0
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            want = 2 * int((now - self.t0) * RATE) - total
            if want <= 0:
                continue
            got = self._fifo.read(want)
            if self.first_sound is None and any(got):
                self.first_sound = (total + next(i for i, b in enumerate(got) if b)) // 2
            total += len(got)
            with self._lock:
                self._data += got
            self.log.append((now, total))
            self.heard = total // 2
            if len(got) < want:
                self.short_ticks += 1
                self.t0 += (want - len(got)) / 2 / RATE

    def samples(self) -> Samples:
        with self._lock:
            data = bytes(self._data[: len(self._data) // 2 * 2])
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    def read_at(self, sample: int) -> float:
        """When sample ``sample`` was read."""
        return next(at for at, total in self.log if total > 2 * sample)


class Tap:
    """The speaker's source: the real ``Playback``, with the time and size of every read the
    device makes and what it returned (instrumentation only: it changes nothing)."""

    def __init__(self, playback: Playback) -> None:
        self._playback = playback
        self.reads: list[tuple[float, Samples]] = []

    def read(self, n: int) -> Samples:
        at = time.monotonic()
        samples = self._playback.read(n)
        self.reads.append((at, samples))
        return samples


async def wait_until(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Poll ``condition`` every 10 ms (cheap conditions only: PortAudio's callback needs the
    GIL in time); TimeoutError naming ``what`` after ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            while not condition():  # noqa: ASYNC110 (the threads and the sim set no event)
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise TimeoutError(f"timed out waiting for {what}") from None


class AgentAudio:
    """The agent audio events a conversation's record shows as sent, parsed as they come."""

    def __init__(self, rec: ConversationRecord) -> None:
        self._rec = rec
        self._seen = 0
        self.events: list[Audio] = []

    def update(self) -> list[Audio]:
        for frame in self._rec.sent[self._seen :]:
            event = parse_server(frame)
            if isinstance(event, Audio):
                self.events.append(event)
        self._seen = len(self._rec.sent)
        return self.events

    def final(self) -> bool:
        """Whether the turn's last chunk has been sent."""
        return any(event.is_final for event in self.update())


def client(sim: SimServer, sink: Playback, **options: Any) -> AgentClient:
    return AgentClient(
        Endpoint(AGENT_ID, sim.ws_base, sim.http_base),
        ConversationInitiationClientData(),
        ClientOptions(**options),
        source_rate=RATE,
        sink=sink,
    )


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await; an exception a task ended with (not a cancellation) is raised."""
    for task in tasks:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            raise outcome


# ----------------------------------------------------------------------------------------------
# Scenarios (run in the child)


@scenario
def capture(args: Json) -> Json:
    """The fixture spoken into the fake microphone in real time, captured at 48 kHz and fed
    frame by frame to a client that was pressed first; the simulator takes pcm_16000."""
    fixture = speech_like(CAPTURE_SECONDS)
    frames_expected = len(fixture) // PERIOD
    sent_expected = streamed_count(len(fixture), RATE, 16000)
    out = Path(args["out"])

    async def main() -> Json:
        agent = AgentDefinition(
            agent_id=AGENT_ID, first_message="", input_format=AudioFormat.PCM_16000
        )
        async with SimServer(agents=[agent]) as sim:
            fifo = Fifo(Path(os.environ["FAKE_MIC_FILE"]))
            mouth = Mouth(fifo, fixture)
            mic = Microphone(AudioInputConfig(device="fakemic", rate=RATE))
            agent_client = client(sim, Playback(RATE, volume=1.0))
            captured: list[Samples] = []
            agent_client.press()  # every frame from the first is the user's speech
            tasks = [asyncio.create_task(agent_client.run())]
            try:
                mic.open()
                mouth.start()
                tasks.append(asyncio.create_task(mic.run()))
                started = time.monotonic()
                async with asyncio.timeout(CAPTURE_SECONDS + 5):
                    async with contextlib.aclosing(mic.frames()) as frames:
                        async for frame in frames:
                            captured.append(frame)
                            agent_client.feed(frame)
                            if len(captured) == frames_expected:
                                break
                elapsed = time.monotonic() - started
                (rec,) = await sim.wait_for_conversations(1)
                await wait_until(
                    lambda: len(rec.user_audio) >= 2 * sent_expected, "the audio to arrive", 5
                )
                await asyncio.sleep(0.1)  # nothing more comes
                result = {
                    "frames": len(captured),
                    "frame_sizes": sorted({len(f) for f in captured}),
                    "capture_exact": bool(np.array_equal(np.concatenate(captured), fixture)),
                    "capture_s": elapsed,
                    "overruns": mic.overruns,
                    "xruns": mic.xruns,
                    "sent_bytes": len(rec.user_audio),
                    "state": agent_client.state.value,
                }
                np.save(out / "sent.npy", np.frombuffer(bytes(rec.user_audio), dtype="<i2"))
            finally:
                mouth.stop()
                fifo.close()  # PortAudio's thread may be blocked reading the FIFO
                await stop_tasks(tasks)
        return result

    return asyncio.run(main())


@dataclass
class SpeakerChain:
    """The client's speech path: simulator -> AgentClient -> Playback -> Speaker -> FIFO."""

    sim: SimServer
    playback: Playback
    tap: Tap
    speaker: Speaker
    client: AgentClient
    ear: Ear
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def speaker_chain(output_format: AudioFormat, text: str) -> AsyncIterator[SpeakerChain]:
    """A conversation (always connected) whose agent says ``text`` first, played through
    the fake speaker at 48 kHz into a FIFO drained in real time."""
    agent = AgentDefinition(
        agent_id=AGENT_ID,
        first_message=text,
        input_format=AudioFormat.PCM_16000,
        output_format=output_format,
        audio_pace=AUDIO_PACE,
    )
    async with SimServer(agents=[agent]) as sim:
        fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]), capacity=PIPE_BYTES)
        ear = Ear(fifo)
        playback = Playback(RATE, jitter_ms=JITTER_MS, volume=1.0, period_s=PERIOD_S)
        tap = Tap(playback)
        speaker = Speaker(AudioOutputConfig(device="fakespk", rate=RATE), tap)
        chain = SpeakerChain(
            sim, playback, tap, speaker, client(sim, playback, always_connected=True), ear
        )
        try:
            speaker.open()
            ear.start()
            chain.tasks += [
                asyncio.create_task(speaker.run()),
                asyncio.create_task(chain.client.run()),
            ]
            yield chain
        finally:
            ear.stop()
            fifo.close()  # PortAudio's thread may be blocked writing into the FIFO
            await stop_tasks(chain.tasks)
            speaker.close()  # when open() succeeded but no task ran it


def save_turn(out: Path, audio: AgentAudio, output_format: AudioFormat) -> list[int]:
    """Every agent audio chunk the simulator sent, decoded: ``turn.npy``; returns their
    lengths."""
    chunks = [decode_audio(event.audio, output_format) for event in audio.update()]
    np.save(out / "turn.npy", np.concatenate(chunks))
    return [len(chunk) for chunk in chunks]


@scenario
def playback(args: Json) -> Json:
    """The agent's first message ``text`` in ``format``, played out to its end."""
    output_format = AudioFormat(args["format"])
    out = Path(args["out"])

    async def main() -> Json:
        async with speaker_chain(output_format, args["text"]) as chain:
            (rec,) = await chain.sim.wait_for_conversations(1)
            audio = AgentAudio(rec)
            await wait_until(audio.final, "the whole turn to be sent")
            await wait_until(lambda: not chain.playback.is_playing, "the turn to play")
            # What the card holds (FIFO, ALSA's buffer, PortAudio's silence first) reaches the
            # ear, and some silence after it.
            played = sum(len(samples) for _, samples in chain.tap.reads)
            await wait_until(lambda: chain.ear.heard >= played + 0.2 * RATE, "the ear")
            chain.ear.stop()
            np.save(out / "recording.npy", chain.ear.samples())
            return {
                "chunks": save_turn(out, audio, output_format),
                "underruns": chain.playback.underruns,
                "flushes": chain.playback.flushes,
                "xruns": chain.speaker.xruns,
                "short_ticks": chain.ear.short_ticks,
            }

    return asyncio.run(main())


@scenario
def barge_in(args: Json) -> Json:
    """A long turn plays; a press barges in a second into it; the rest of the turn, which the
    simulator keeps sending, must never play."""
    output_format = AudioFormat(args["format"])
    out = Path(args["out"])

    async def main() -> Json:
        async with speaker_chain(output_format, LONG_TEXT) as chain:
            ear = chain.ear
            (rec,) = await chain.sim.wait_for_conversations(1)
            audio = AgentAudio(rec)
            await wait_until(lambda: ear.first_sound is not None, "the turn to be heard")
            onset = ear.first_sound
            assert onset is not None
            await wait_until(lambda: ear.heard >= onset + PRESS_AFTER_S * RATE, "a second of it")
            chunks_before = len(audio.update())
            pressed_at = time.monotonic()
            chain.client.press()
            flushed_s = chain.playback.flushed_s
            await wait_until(audio.final, "the whole turn to be sent")
            samples = sum(len(decode_audio(a.audio, output_format)) for a in audio.events)
            # Listen until well past the moment the whole turn would have been played.
            end = ear.read_at(onset) + samples / output_format.sample_rate + 0.3
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            ear.stop()
            np.save(out / "recording.npy", ear.samples())
            np.save(out / "tapped.npy", np.concatenate([s for _, s in chain.tap.reads]))
            np.save(out / "read_times.npy", np.array([at for at, _ in chain.tap.reads]))
            np.save(out / "ear_log.npy", np.array(ear.log, dtype=np.float64))
            return {
                "pressed_at": pressed_at,
                "chunks": save_turn(out, audio, output_format),
                "late_chunks": len(audio.events) - chunks_before,
                "flushed_s": flushed_s,
                "flushes": chain.playback.flushes,
                "underruns": chain.playback.underruns,
                "xruns": chain.speaker.xruns,
                "short_ticks": ear.short_ticks,
                "interruptions": list(rec.interruptions),
            }

    return asyncio.run(main())


# ----------------------------------------------------------------------------------------------
# Tests


@pytest.mark.timeout(60)
def test_capture_at_48k_streamed_as_16k_matches_a_one_shot_resampling(tmp_path: Path) -> None:
    card = write_fake_card(tmp_path, mic_file=tmp_path / "mic.fifo")
    result = run_child(card, "capture", tmp_path)
    assert problems(result) == []
    fixture = speech_like(CAPTURE_SECONDS)
    # The microphone delivered the fixture bit-exact, in 20 ms frames, in real time.
    assert result["frames"] == len(fixture) // PERIOD and result["frame_sizes"] == [PERIOD]
    assert result["capture_exact"] is True
    assert (result["overruns"], result["xruns"]) == (0, 0)
    assert result["capture_s"] == pytest.approx(CAPTURE_SECONDS, abs=0.25)
    # The simulator received the stream: exactly the streaming count of samples...
    sent = np.load(tmp_path / "sent.npy").astype(np.int16)
    reference = one_shot(fixture, RATE, 16000)
    delay = StreamResampler(RATE, 16000).delay_samples
    assert len(reference) == len(fixture) // 3
    assert len(sent) == streamed_count(len(fixture), RATE, 16000) == len(reference) - delay
    # ...equal to the one-shot resampling within 1 LSB.
    difference = max_lsb(sent, reference[: len(sent)])
    assert difference <= 1
    print(f"capture: {len(sent)} of {len(reference)} samples, max diff {difference} LSB")


PLAYBACK_CASES = [
    pytest.param(AudioFormat.PCM_22050, PLAYBACK_TEXT, id="pcm_22050"),
    pytest.param(AudioFormat.PCM_24000, PLAYBACK_TEXT, id="pcm_24000"),
    pytest.param(AudioFormat.ULAW_8000, PLAYBACK_TEXT, id="ulaw_8000"),
    pytest.param(AudioFormat.ULAW_8000, ABRUPT_TEXT, id="ulaw_8000-abrupt-end"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("output_format", "text"), PLAYBACK_CASES)
def test_playback_at_48k_matches_a_one_shot_resampling(
    tmp_path: Path, output_format: AudioFormat, text: str
) -> None:
    card = write_fake_card(tmp_path, spk_file=tmp_path / "speaker.fifo")
    result = run_child(card, "playback", tmp_path, format=output_format.value, text=text)
    assert problems(result) == []
    assert (result["underruns"], result["flushes"]) == (0, 0)
    rate = output_format.sample_rate
    turn = np.load(tmp_path / "turn.npy").astype(np.int16)
    recording = np.load(tmp_path / "recording.npy").astype(np.int16)
    assert len(result["chunks"]) > 10 and len(turn) > rate  # a turn of several chunks, over 1 s
    reference = one_shot(turn, rate, RATE)
    played = len(reference)  # the client flushes its resampler at the end of the turn
    at = locate(recording, reference)
    assert at > 0 and not recording[:at].any()  # silence before, then the turn...
    assert len(recording) >= at + played + PERIOD
    heard = recording[at : at + played]
    difference = max_lsb(heard, reference[:played])
    assert difference <= 1  # ...equal to the one-shot resampling...
    assert not recording[at + played :].any()  # ...and nothing after it.
    tail = reference[-5 * RATE // 1000 :]  # the last 5 ms: the filter's delay and more
    peak = int(np.abs(tail).max())
    assert (peak > 0) is (text == ABRUPT_TEXT)  # an abrupt end is played to its last sample
    print(
        f"{output_format} ({text!r}): {played} of {len(reference)} samples played, "
        f"max diff {difference} LSB; last 5 ms peak |{peak}|; "
        f"turn at sample {at}, {len(result['chunks'])} chunks"
    )


@pytest.mark.timeout(60)
def test_a_barge_in_silences_the_speaker_and_no_stale_audio_follows(tmp_path: Path) -> None:
    output_format = AudioFormat.PCM_22050
    rate = output_format.sample_rate
    card = write_fake_card(tmp_path, spk_file=tmp_path / "speaker.fifo")
    result = run_child(card, "barge_in", tmp_path, format=output_format.value)
    assert problems(result) == []
    assert result["underruns"] == 0
    # The simulator never heard of the barge-in: it went on sending the old turn.
    assert result["interruptions"] == []
    assert result["late_chunks"] >= 10  # over a second of it after the press
    turn = np.load(tmp_path / "turn.npy").astype(np.int16)
    reference = one_shot(turn, rate, RATE)
    recording = np.load(tmp_path / "recording.npy").astype(np.int16)
    tapped = np.load(tmp_path / "tapped.npy").astype(np.int16)
    read_times = np.load(tmp_path / "read_times.npy")
    ear_log = np.load(tmp_path / "ear_log.npy")  # (time, bytes read by then)
    pressed_at = result["pressed_at"]

    # The card wrote exactly what the device read from Playback, after PortAudio's silence:
    # the recording position of every read is known.
    lead_in = int(np.argmax(recording != 0)) - int(np.argmax(tapped != 0))
    assert lead_in >= 0 and not recording[:lead_in].any()
    assert np.array_equal(recording[lead_in:], tapped[: len(recording) - lead_in])
    starts = lead_in + PERIOD * np.arange(len(read_times))

    # The first read the device began after the press, and every one after it, was silent.
    first_after = int(np.argmax(read_times >= pressed_at))
    assert read_times[first_after] >= pressed_at
    cut = int(starts[first_after])
    assert not recording[cut:].any()
    assert len(recording) - cut > RATE  # listened to over a second of that silence
    # Before it: the turn from its start, as the one-shot resampling has it, within 1 LSB.
    at = locate(recording, reference)
    assert at > 0 and not recording[:at].any()
    heard = cut - at  # samples of the turn the device took before the press
    difference = max_lsb(recording[at:cut], reference[:heard])
    assert difference <= 1
    # What came after that point in the sent audio, over a second of speech, never played.
    assert len(reference) - heard > RATE and np.abs(reference[heard:]).max() > 10000
    # The flush dropped exactly what had arrived and not been played: the played part plus
    # the flushed part is what the client resampled from the chunks it had by then.
    flushed = round(result["flushed_s"] * RATE)
    received = heard + flushed
    assert flushed > 0 and result["flushes"] == 1
    ends = np.cumsum(result["chunks"])
    assert received in {streamed_count(int(end), rate, RATE) for end in ends}

    # When. The device asked for its next period (silent) within one wake-up of the press:
    # the fake card wakes it every two periods (a page of the FIFO holds two), when the ear,
    # ticking every TICK_S, has emptied a page; plus scheduling slack.
    gaps = np.diff(read_times[first_after // 2 : first_after])
    wake = float(np.median(gaps[gaps > PERIOD_S / 2]))
    device_delay = float(read_times[first_after] - pressed_at)
    assert device_delay <= 2 * PERIOD_S + TICK_S + SLACK_S

    def read_by_ear(sample: int) -> float:
        return float(ear_log[np.argmax(ear_log[:, 1] > 2 * sample), 0])

    # The ear: later by what the card holds, the FIFO and ALSA's buffer (the card's lead:
    # from each read by the device to the ear reading its first sample).
    steady = range(first_after // 2, first_after)
    leads = [read_by_ear(int(starts[k])) - read_times[k] for k in steady]
    heard_delay = read_by_ear(cut) - pressed_at
    assert heard_delay <= device_delay + max(leads) + TICK_S + 0.01
    heard_at_press = int(np.interp(pressed_at, ear_log[:, 0], ear_log[:, 1])) // 2
    print(
        f"barge-in: the device read silence {1000 * device_delay:.1f} ms after the press "
        f"(it wakes every {1000 * wake:.1f} ms); the ear heard silence after "
        f"{1000 * heard_delay:.1f} ms ({(cut - heard_at_press) / RATE * 1000:.1f} ms of old "
        f"audio; card lead {1000 * min(leads):.1f}-{1000 * max(leads):.1f} ms, median "
        f"{1000 * float(np.median(leads)):.1f}: FIFO {1000 * PIPE_BYTES / 2 / RATE:.1f} ms + "
        f"ALSA); {heard} of {len(reference)} samples played, max diff {difference} LSB, "
        f"{flushed} flushed; {result['late_chunks']} chunks sent after the press; PortAudio's "
        f"silence {lead_in} samples; ear short {result['short_ticks']} ticks"
    )
