"""Tests of piagent.audio.devices through the real PyAudio -> PortAudio -> ALSA path.

The ALSA fake card of testing.md (tests/audio/alsa.py) stands in for the sound card. Every test
that touches PortAudio runs a *scenario* (a function below) in a child process started with
``sys.executable``, which prints its findings as JSON; the assertions are made here. Why a child
process rather than this one:

- ``ALSA_CONFIG_PATH`` must be set before alsa-lib first reads its configuration, and PortAudio
  enumerates devices when it initialises; a child starts clean whatever ran before it in pytest.
- PortAudio aborts its process on some configuration errors, and a stream whose thread is
  blocked on a FIFO cannot be closed: in a child that is a failed test, not a dead or hung
  pytest (``subprocess.run`` has a timeout).
- The child's fd 2 is ours to capture: the start-up noise test reads it whole.
- No PortAudio thread ever runs inside pytest.

The fake card has no clock, so captures read from a FIFO the scenario fills (capture stops
when it runs dry) and playback writes into a FIFO the scenario drains at a bounded pace.
The tests that need no PortAudio (rate negotiation, name resolution, the table, the gain
arithmetic) run in this process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import pytest

from piagent.audio.devices import (
    FALLBACK_RATES,
    DeviceError,
    DeviceInfo,
    Microphone,
    Speaker,
    alsa_hw_name,
    format_devices,
    list_devices,
    negotiate_rate,
    resolve_device,
)
from piagent.config import AudioInputConfig, AudioOutputConfig
from piagent.errors import PiagentError
from tests.audio.alsa import FAKE_DEVICES, FakeCard, Fifo, write_fake_card
from tests.audio.child import Scenarios

Samples = npt.NDArray[np.int16]
Json = dict[str, Any]


# Timings of the device-loss scenarios: shorter than the defaults (1 s, 0.5 s doubling to 5 s),
# to keep the file quick; the code paths are the same.
class Timings(TypedDict):
    stall_timeout: float
    backoff_initial: float
    backoff_max: float


# What a loss warning ends with: the advice.
RETURN = (
    "until it returns: check that it is connected and not used by another program "
    "(`piagent devices` lists what PortAudio sees)"
)

FAST: Timings = {"stall_timeout": 0.5, "backoff_initial": 0.2, "backoff_max": 1.0}


def fixture(rate: int, seconds: float, seed: int = 1) -> Samples:
    """A 440 Hz sine plus noise and a DC offset (no 20 ms frame is all zero), with samples
    at both rails (-32768 and 32767) every few dozen samples, as raw S16_LE would hold them."""
    n = round(rate * seconds)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    x = 9000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 3000, n) + 700
    x[::97] = 32767
    x[::89] = -32768
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def native_threads() -> int:
    """Threads of this process, PortAudio's included (threading.enumerate misses those)."""
    return sum(1 for _ in Path("/proc/self/task").iterdir())


async def settled_threads(expected: int) -> int:
    """The thread count once it is ``expected`` or 0.5 s have passed: a joined thread can
    still be listed for a moment while the kernel tears it down."""
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: native_threads() == expected, "threads to exit", 0.5)
    return native_threads()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


# ----------------------------------------------------------------------------------------------
# Running scenarios in a child process


@dataclass
class Child:
    result: Json
    stderr: str

    @property
    def logs(self) -> list[tuple[str, str]]:
        return [(level, message) for level, message in self.result["logs"]]

    def messages(self, level: str) -> list[str]:
        return [message for lvl, message in self.logs if lvl == level]


scenarios = Scenarios(__name__)
scenario = scenarios  # the decorator that registers a scenario


def run_child(card: FakeCard, name: str, timeout: float = 30, **args: Any) -> Child:
    result, stderr = scenarios.spawn(card, name, timeout=timeout, **args)
    return Child(result, stderr)


async def wait_until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> float:
    """Poll ``condition`` (a test may poll) until true; returns the loop time it became true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return loop.time()


class ScriptedSource:
    """A SampleSource for the speaker: plays what it is given, then silence. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: Samples = np.zeros(0, dtype=np.int16)
        self._position = 0
        self._fail_at: int | None = None
        self.reads = 0

    def play(self, samples: Samples) -> None:
        with self._lock:
            self._data, self._position = samples, 0

    def fail_once(self, after_reads: int) -> None:
        """Raise from the read ``after_reads`` reads from now, once."""
        with self._lock:
            self._fail_at = self.reads + after_reads

    @property
    def done(self) -> bool:
        with self._lock:
            return self._position >= self._data.size

    def read(self, n: int) -> Samples:
        with self._lock:
            self.reads += 1
            if self.reads == self._fail_at:
                self._fail_at = None
                raise RuntimeError("boom")
            out = np.zeros(n, dtype=np.int16)
            chunk = self._data[self._position : self._position + n]
            out[: chunk.size] = chunk
            self._position += chunk.size
            return out


async def drain(fifo: Fifo, rate: int, into: bytearray, speed: float = 4.0) -> None:
    """Read what the speaker writes into ``fifo`` at ``speed`` times real time, forever."""
    step = 0.01
    limit = round(rate * step * speed) * 2
    while True:
        into += fifo.read(limit)
        await asyncio.sleep(step)


async def loop_lag(record: list[float]) -> None:
    """Append how late each 10 ms tick of the loop runs, forever."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(0.01)
        record.append(loop.time() - start - 0.01)


# ----------------------------------------------------------------------------------------------
# Scenarios (run in the child)


@scenario
def capture(args: Json) -> Json:
    """Capture a fixture from a FIFO through Microphone.frames(), as the service would."""
    rate, seconds = args["rate"], args["seconds"]
    fifo = Fifo(Path(os.environ["FAKE_MIC_FILE"]))
    fifo.write(fixture(rate, seconds))
    count = round(seconds * 1000 / 20)

    async def main() -> Json:
        config = AudioInputConfig(device=args["device"], rate=rate, gain_db=args["gain_db"])
        mic = Microphone(config)
        threads = [native_threads()]
        mic.open()
        threads.append(native_threads())
        frames: list[Samples] = []
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(mic.run())
            async with asyncio.timeout(5), contextlib.aclosing(mic.frames()) as stream:
                async for frame in stream:
                    frames.append(frame)
                    if len(frames) == count:
                        break
                await wait_until(lambda: mic.healthy, "the microphone to be healthy")
            result = {
                "rate": mic.rate,
                "name": mic.name,
                "healthy": mic.healthy,
                "overruns": mic.overruns,
                "clipped": mic.clipped,
                "sizes": sorted({frame.size for frame in frames}),
                "dtypes": sorted({str(frame.dtype) for frame in frames}),
                "audio": b64(b"".join(frame.astype("<i2").tobytes() for frame in frames)),
            }
            fifo.close()  # end of file: lets PortAudio's thread, blocked on the FIFO, go
            runner.cancel()
        threads.append(await settled_threads(threads[0]))
        return {**result, "threads": threads, "healthy_after": mic.healthy}

    return asyncio.run(main())


@scenario
def capture_overrun(args: Json) -> Json:
    """Capture 2 s while nobody reads: the queue keeps the newest second."""
    rate = 16000
    fifo = Fifo(Path(os.environ["FAKE_MIC_FILE"]))
    fifo.write(fixture(rate, 2.0))  # 64000 bytes: fits the pipe

    async def main() -> Json:
        mic = Microphone(AudioInputConfig(device="fakemic", rate=rate), queue_frames=50)
        mic.open()
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(mic.run())
            await wait_until(lambda: mic.overruns >= 50, "100 frames to arrive")
            async with asyncio.timeout(1):
                frames = [await mic.read() for _ in range(50)]
            result = {
                "overruns": mic.overruns,
                "audio": b64(b"".join(f.astype("<i2").tobytes() for f in frames)),
            }
            fifo.close()
            runner.cancel()
        return result

    return asyncio.run(main())


@scenario
def mic_absent_at_start(args: Json) -> Json:
    """The microphone's file does not exist yet when the daemon starts; it appears later."""
    rate = 48000
    path = Path(os.environ["FAKE_MIC_FILE"])

    async def main() -> Json:
        mic = Microphone(AudioInputConfig(device="fakemic", rate=rate), **FAST)
        received: list[Samples] = []

        async def consume() -> None:
            async for frame in mic.frames():
                received.append(frame)

        async with asyncio.TaskGroup() as tasks:
            helpers = [tasks.create_task(mic.run()), tasks.create_task(consume())]
            await asyncio.sleep(0.6)
            while_absent = {"healthy": mic.healthy, "frames": len(received)}
            fifo = Fifo(path)
            fifo.write(fixture(rate, 0.2, seed=7))
            await wait_until(lambda: mic.healthy, "the microphone to appear", 3.0)
            await wait_until(lambda: sum(1 for f in received if f.any()) == 10, "its audio")
            fifo.close()
            for task in helpers:
                task.cancel()
        return {
            "while_absent": while_absent,
            "silent_first": all(not f.any() for f in received[: while_absent["frames"]]),
            "sound": b64(b"".join(f.astype("<i2").tobytes() for f in received if f.any())),
        }

    return asyncio.run(main())


@scenario
def playback(args: Json) -> Json:
    """Play a fixture through Speaker into a FIFO; return everything the FIFO received."""
    rate = args["rate"]
    fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]))
    payload = fixture(rate, 0.25, seed=2).astype("<i2").tobytes()

    async def main() -> Json:
        source = ScriptedSource()
        speaker = Speaker(AudioOutputConfig(device="fakespk", rate=rate), source)
        threads = [native_threads()]
        speaker.open()
        threads.append(native_threads())
        source.play(fixture(rate, 0.25, seed=2))
        played = bytearray()
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(speaker.run())
            drainer = tasks.create_task(drain(fifo, rate, played))
            await wait_until(lambda: payload in played, "the payload to be played")
            await wait_until(lambda: speaker.healthy, "the speaker to be healthy")
            result = {
                "rate": speaker.rate,
                "name": speaker.name,
                "period_s": speaker.period_s,
                "healthy": speaker.healthy,
                "played": b64(bytes(played)),
            }
            drainer.cancel()
            fifo.close()  # PortAudio's thread may be blocked writing into the FIFO
            runner.cancel()
        threads.append(await settled_threads(threads[0]))
        return {**result, "threads": threads}

    return asyncio.run(main())


def _open_one(kind: str, device: str | int, rate: int | None) -> Json:
    device_obj: Microphone | Speaker
    if kind == "mic":
        device_obj = Microphone(AudioInputConfig(device=device, rate=rate))
    else:
        device_obj = Speaker(AudioOutputConfig(device=device, rate=rate))
    try:
        device_obj.open()
    except DeviceError as exc:
        return {"error": str(exc), "piagent_error": isinstance(exc, PiagentError)}
    try:
        period = device_obj.frame_samples if isinstance(device_obj, Microphone) else None
        return {
            "name": device_obj.name,
            "rate": device_obj.rate,
            "period_s": device_obj.period_s if isinstance(device_obj, Speaker) else None,
            "frame_samples": period,
        }
    finally:
        device_obj.close()


@scenario
def open_devices(args: Json) -> Json:
    """Open each [kind, device, rate] in turn; ``{"index_of": name}`` names a device by index."""
    indexes = {d.name: d.index for d in list_devices(rates=())}

    async def main() -> list[Json]:
        results = []
        for kind, device, rate in args["specs"]:
            if isinstance(device, dict):
                device = indexes[device["index_of"]]
            results.append(_open_one(kind, device, rate))
        return results

    return {"indexes": indexes, "results": asyncio.run(main())}


@scenario
def devices(args: Json) -> Json:
    found = list_devices()
    return {"devices": [asdict(d) for d in found], "table": format_devices(found)}


@scenario
def raw_portaudio(args: Json) -> Json:
    """Control for the noise test: PyAudio used directly, without devices.py's silencing."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        index = next(
            i
            for i in range(pa.get_device_count())
            if pa.get_device_info_by_index(i)["name"] == "fake48k"
        )
        with contextlib.suppress(ValueError):
            pa.is_format_supported(
                44100, input_device=index, input_channels=1, input_format=pyaudio.paInt16
            )
    finally:
        pa.terminate()
    return {}


@scenario
def mic_loss(args: Json) -> Json:
    """A capture FIFO runs dry (stall) and disappears; later a new one appears at its path."""
    rate = 48000
    path = Path(os.environ["FAKE_MIC_FILE"])
    first, second = fixture(rate, 0.2, seed=3), fixture(rate, 0.2, seed=4)

    async def main() -> Json:
        loop = asyncio.get_running_loop()
        fifo = Fifo(path)
        fifo.write(first)
        mic = Microphone(AudioInputConfig(device="fakemic", rate=rate), **FAST)
        mic.open()
        received: list[tuple[float, Samples]] = []
        lags: list[float] = []

        async def consume() -> None:
            async for frame in mic.frames():
                received.append((loop.time(), frame))

        def sound() -> int:
            return sum(1 for _, frame in received if frame.any())

        async with asyncio.TaskGroup() as tasks:
            helpers = [
                tasks.create_task(mic.run()),
                tasks.create_task(consume()),
                tasks.create_task(loop_lag(lags)),
            ]
            await wait_until(lambda: mic.healthy, "the microphone to open")
            await wait_until(lambda: sound() == 10, "the first fixture")
            lost_at = await wait_until(lambda: not mic.healthy, "the stall to be noticed")
            fifo.remove()  # EOF unblocks PortAudio's thread; the device is gone
            await asyncio.sleep(1.0)
            during_outage = {"healthy": mic.healthy, "max_lag": max(lags)}
            fifo = Fifo(path)  # the device returns
            fifo.write(second)
            back_at = await wait_until(lambda: mic.healthy, "the microphone to return", 3.0)
            await wait_until(lambda: sound() == 20, "the second fixture")
            fifo.close()
            for task in helpers:
                task.cancel()
        return {
            "lost_at": lost_at,
            "back_at": back_at,
            "during_outage": during_outage,
            "name": mic.name,
            "rate": mic.rate,
            "times": [t for t, _ in received],
            "silent": [not frame.any() for _, frame in received],
            "sound": b64(b"".join(f.astype("<i2").tobytes() for _, f in received if f.any())),
            "sizes": sorted({frame.size for _, frame in received}),
        }

    return asyncio.run(main())


@scenario
def speaker_loss(args: Json) -> Json:
    """The speaker's FIFO stops draining (stall) and goes away; its file then cannot be
    created (each reopened stream fails at once); later a new FIFO appears."""
    rate = 48000
    first, second = fixture(rate, 0.1, seed=5), fixture(rate, 0.1, seed=6)
    first_bytes, second_bytes = first.astype("<i2").tobytes(), second.astype("<i2").tobytes()
    directory = Path(os.environ["FAKE_SPK_FILE"]).parent

    async def main() -> Json:
        fifo = Fifo(directory / "speaker-a.fifo")
        os.environ["FAKE_SPK_FILE"] = str(fifo.path)
        source = ScriptedSource()
        speaker = Speaker(AudioOutputConfig(device="fakespk", rate=rate), source, **FAST)
        speaker.open()
        source.play(first)
        played_a, played_b = bytearray(), bytearray()
        lags: list[float] = []
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(speaker.run())
            lag = tasks.create_task(loop_lag(lags))
            drainer = tasks.create_task(drain(fifo, rate, played_a))
            await wait_until(lambda: speaker.healthy, "the speaker to open")
            await wait_until(lambda: first_bytes in played_a, "the first fixture")
            drainer.cancel()  # the pipe fills up and PortAudio's write blocks: a stall
            await wait_until(lambda: not speaker.healthy, "the stall to be noticed")
            os.environ["FAKE_SPK_FILE"] = str(directory / "missing" / "speaker.raw")
            fifo.remove()  # the blocked write fails: PortAudio's thread ends
            lags.clear()
            reads_before = source.reads
            await asyncio.sleep(1.0)
            during_outage = {
                "healthy": speaker.healthy,
                "max_lag": max(lags),
                "source_reads": source.reads - reads_before,
            }
            fifo = Fifo(directory / "speaker-b.fifo")
            os.environ["FAKE_SPK_FILE"] = str(fifo.path)
            drainer = tasks.create_task(drain(fifo, rate, played_b))
            await wait_until(lambda: speaker.healthy, "the speaker to return", 3.0)
            source.play(second)
            await wait_until(lambda: second_bytes in played_b, "the second fixture")
            drainer.cancel()
            lag.cancel()
            fifo.close()
            runner.cancel()
        return {
            "during_outage": during_outage,
            "name": speaker.name,
            "first_at": bytes(played_a).find(first_bytes),
            "second_at": bytes(played_b).find(second_bytes),
        }

    return asyncio.run(main())


@scenario
def speaker_source_error(args: Json) -> Json:
    """The source raises inside PortAudio's callback: the stream aborts and is reopened."""
    rate = 16000
    fifo = Fifo(Path(os.environ["FAKE_SPK_FILE"]))

    async def main() -> Json:
        source = ScriptedSource()
        speaker = Speaker(AudioOutputConfig(device="fakespk", rate=rate), source, **FAST)
        played = bytearray()
        async with asyncio.TaskGroup() as tasks:
            runner = tasks.create_task(speaker.run())
            drainer = tasks.create_task(drain(fifo, rate, played, speed=1.0))
            await wait_until(lambda: speaker.healthy, "the speaker to open")
            source.fail_once(after_reads=3)
            await wait_until(lambda: not speaker.healthy, "the failure to be noticed")
            await wait_until(lambda: speaker.healthy, "the speaker to return", 3.0)
            result = {"healthy": speaker.healthy, "xruns": speaker.xruns}
            drainer.cancel()
            fifo.close()
            runner.cancel()
        return result

    return asyncio.run(main())


@scenario
def quiet_open(args: Json) -> Json:
    """Everything devices.py does with PortAudio, including what makes ALSA and JACK talk."""

    async def main() -> Json:
        refused = _open_one("mic", "fake48k", 44100)  # probes print ALSA errors
        mic = Microphone(AudioInputConfig(device="default"))
        speaker = Speaker(AudioOutputConfig(device="default"))
        mic.open()
        speaker.open()
        mic.close()
        speaker.close()
        return {"refused": refused, "devices": len(list_devices())}

    return asyncio.run(main())


# ----------------------------------------------------------------------------------------------
# Tests through PortAudio (each in a child process)


@pytest.fixture
def card(tmp_path: Path) -> FakeCard:
    """The fake card with its files at FIFO paths that scenarios create."""
    return write_fake_card(
        tmp_path, mic_file=tmp_path / "mic.fifo", spk_file=tmp_path / "speaker.fifo"
    )


@pytest.fixture
def plain_card(tmp_path: Path) -> FakeCard:
    """The fake card capturing /dev/zero and playing into /dev/null."""
    return write_fake_card(tmp_path)


def frames_of(audio: bytes, size: int) -> list[bytes]:
    return [audio[i : i + 2 * size] for i in range(0, len(audio), 2 * size)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("rate", "seconds"), [(48000, 0.5), (44100, 0.5)])
def test_capture_is_bit_exact_in_20ms_frames(card: FakeCard, rate: int, seconds: float) -> None:
    child = run_child(card, "capture", rate=rate, seconds=seconds, gain_db=0.0, device="fakemic")
    result = child.result
    expected = fixture(rate, seconds)
    assert result["rate"] == rate
    assert result["name"] == "fakemic"
    assert result["healthy"] is True
    assert result["sizes"] == [rate // 50]  # 20 ms
    assert result["dtypes"] == ["int16"]
    assert unb64(result["audio"]) == expected.astype("<i2").tobytes()
    assert result["overruns"] == 0
    # Cancelling run() closed the stream: PortAudio's callback thread is gone.
    before, while_open, after = result["threads"]
    assert (while_open, after) == (before + 1, before)
    assert result["healthy_after"] is False
    assert result["clipped"] == np.count_nonzero(np.abs(expected.astype(np.int32)) >= 32767)
    assert result["clipped"] > 0
    (info,) = child.messages("INFO")
    assert (
        info == f"Microphone open: 'fakemic' (index 0), {rate} Hz, mono, period 20 ms, buffer 80 ms"
    )


@pytest.mark.timeout(60)
def test_capture_gain_doubles_with_clipping(card: FakeCard) -> None:
    gain_db = 20 * math.log10(2)  # x2, exactly representable in the fixed-point gain
    child = run_child(card, "capture", rate=48000, seconds=0.5, gain_db=gain_db, device="fakemic")
    source = fixture(48000, 0.5).astype(np.int32)
    expected = np.clip(2 * source, -32768, 32767).astype(np.int16)
    got = np.frombuffer(unb64(child.result["audio"]), dtype="<i2")
    assert np.array_equal(got, expected)
    clipped = int(np.count_nonzero(np.abs(expected.astype(np.int32)) >= 32767))
    assert clipped > np.count_nonzero(np.abs(source) >= 32767)  # the gain made more
    assert child.result["clipped"] == clipped


@pytest.mark.timeout(60)
def test_capture_queue_drops_the_oldest_frames(card: FakeCard) -> None:
    child = run_child(card, "capture_overrun")
    assert child.result["overruns"] == 50
    newest = fixture(16000, 2.0)[16000:]
    assert unb64(child.result["audio"]) == newest.astype("<i2").tobytes()


@pytest.mark.timeout(60)
def test_microphone_absent_at_start_yields_silence_then_opens(card: FakeCard) -> None:
    child = run_child(card, "mic_absent_at_start")
    result = child.result
    absent = result["while_absent"]
    assert absent["healthy"] is False
    assert absent["frames"] == pytest.approx(0.6 / 0.02, abs=4) and result["silent_first"]
    assert unb64(result["sound"]) == fixture(48000, 0.2, seed=7).astype("<i2").tobytes()
    (warning,) = child.messages("WARNING")
    assert warning.startswith(
        "Microphone 'fakemic' unavailable: input device 'fakemic' exists but has no channels; "
        "input devices: "
    )
    assert warning.endswith("(run `piagent devices`); retrying until it opens")
    assert any("still unavailable" in m for m in child.messages("DEBUG"))
    (info,) = child.messages("INFO")
    assert info.startswith("Microphone open after ")
    assert info.endswith(": 'fakemic' (index 0), 48000 Hz, mono, period 20 ms, buffer 80 ms")


@pytest.mark.timeout(60)
def test_playback_is_bit_exact(card: FakeCard) -> None:
    child = run_child(card, "playback", rate=48000)
    result = child.result
    assert (result["rate"], result["name"], result["healthy"]) == (48000, "fakespk", True)
    assert result["period_s"] == pytest.approx(0.02)
    before, while_open, after = result["threads"]
    assert (while_open, after) == (before + 1, before)
    played = unb64(result["played"])
    payload = fixture(48000, 0.25, seed=2).astype("<i2").tobytes()
    at = played.find(payload)
    assert at >= 0 and at % 2 == 0
    assert not any(played[:at])  # only the silence PortAudio writes first
    (info,) = child.messages("INFO")
    assert info == "Speaker open: 'fakespk' (index 1), 48000 Hz, mono, period 20 ms, buffer 40 ms"


@pytest.mark.timeout(60)
def test_rate_negotiation_and_device_resolution(plain_card: FakeCard) -> None:
    specs = [
        ["mic", "fakemic", 48000],  # configured
        ["mic", "fakemic", None],  # the device's default (44100), before the fallback list
        ["mic", "fake48k", None],  # a device that only takes 48 kHz says so
        ["spk", "fake22k", None],
        ["mic", "fake48k", 44100],  # refused
        ["spk", "22K", None],  # unique substring, any case
        ["spk", {"index_of": "fakespk"}, 16000],  # index
        ["mic", "default", 16000],
        ["mic", "nosuchdevice", None],
        ["spk", "fake", None],  # ambiguous
    ]
    child = run_child(plain_card, "open_devices", specs=specs)
    results = child.result["results"]
    assert set(FAKE_DEVICES) <= set(child.result["indexes"])
    opened = [(r["name"], r["rate"]) for r in results if "error" not in r]
    assert opened == [
        ("fakemic", 48000),
        ("fakemic", 44100),
        ("fake48k", 48000),
        ("fake22k", 22050),
        ("fake22k", 22050),
        ("fakespk", 16000),
        ("default", 16000),
    ]
    assert results[0]["frame_samples"] == 960
    assert results[3]["period_s"] == pytest.approx(441 / 22050)
    refused, unknown, ambiguous = (r for r in results if "error" in r)
    assert all(r["piagent_error"] for r in (refused, unknown, ambiguous))
    assert refused["error"] == (
        "fake48k does not accept 44100 Hz (mono, 16-bit); it accepts: 48000"
    )
    assert "'nosuchdevice' not found" in unknown["error"]
    for name in ("fakemic", "fakespk", "fake48k", "default"):
        assert repr(name) in unknown["error"]
    assert "ambiguous" in ambiguous["error"] and "'fake22k'" in ambiguous["error"]
    # One INFO line per opened device: name, index, rate and period.
    infos = child.messages("INFO")
    assert len(infos) == len(opened)
    index = child.result["indexes"]
    assert (
        infos[0] == f"Microphone open: 'fakemic' (index {index['fakemic']}), 48000 Hz, mono, "
        "period 20 ms, buffer 80 ms"
    )
    assert (
        infos[3] == f"Speaker open: 'fake22k' (index {index['fake22k']}), 22050 Hz, mono, "
        "period 20 ms, buffer 40 ms"
    )


@pytest.mark.timeout(60)
def test_list_devices_shows_the_fake_card_and_its_rates(plain_card: FakeCard) -> None:
    child = run_child(plain_card, "devices")
    found = {d["name"]: d for d in child.result["devices"]}
    assert set(found) == set(FAKE_DEVICES)
    every = [8000, 11025, 16000, 22050, 32000, 44100, 48000]
    assert found["fakemic"]["input_rates"] == every
    assert found["fakespk"]["output_rates"] == every
    assert found["fakemic"]["default_rate"] == 44100
    assert (found["fake48k"]["input_rates"], found["fake48k"]["output_rates"]) == ([48000],) * 2
    assert found["fake48k"]["default_rate"] == 48000
    assert found["fake22k"]["input_rates"] == [22050]
    assert found["fakemic"]["input_channels"] > 0
    # Stereo-only PCMs: the rates are those with 2 channels (with 1, PortAudio would pad).
    assert (found["stereomic"]["input_rates"], found["stereomic"]["input_rate_channels"]) == (
        every,
        2,
    )
    assert (found["stereospk"]["output_rates"], found["stereospk"]["output_rate_channels"]) == (
        every,
        2,
    )
    assert found["fakemic"]["input_rate_channels"] == 1
    lines = child.result["table"].splitlines()
    assert lines[0].split() == [
        "index",
        "name",
        "in",
        "out",
        "default",
        "Hz",
        "input",
        "kHz",
        "output",
        "kHz",
    ]
    row = next(line for line in lines if " fake48k " in line)
    assert row.split()[-2:] == ["48", "48"]
    row = next(line for line in lines if " fakemic " in line)
    assert "8 11.025 16 22.05 32 44.1 48" in row
    assert child.stderr == ""


@pytest.mark.timeout(60)
def test_portaudio_start_up_noise_is_kept_off_stderr(plain_card: FakeCard) -> None:
    control = run_child(plain_card, "raw_portaudio")
    assert "Cannot find rate converter" in control.stderr  # the noise is real...
    child = run_child(plain_card, "quiet_open")
    assert child.stderr == ""  # ...and none of it gets through devices.py
    assert "does not accept 44100 Hz" in child.result["refused"]["error"]
    assert child.result["devices"] == len(FAKE_DEVICES)
    infos = child.messages("INFO")
    assert [i.split(" (index")[0] for i in infos] == [
        "Microphone open: 'default'",
        "Speaker open: 'default'",
    ]


@pytest.mark.timeout(60)
def test_microphone_loss_yields_paced_silence_and_reopens_by_name(card: FakeCard) -> None:
    child = run_child(card, "mic_loss")
    result = child.result
    # While the device was gone: unhealthy, and nothing held the loop up for long.
    assert result["during_outage"]["healthy"] is False
    assert result["during_outage"]["max_lag"] < 0.15  # a blocked loop would show 0.25 s or more
    # Sound, then silence, then sound again: every captured sample arrived, bit-exact.
    silent = result["silent"]
    first_silent, last_silent = silent.index(True), len(silent) - 1 - silent[::-1].index(True)
    assert silent == [False] * 10 + [True] * (last_silent - first_silent + 1) + [False] * 10
    expected = np.concatenate([fixture(48000, 0.2, seed=3), fixture(48000, 0.2, seed=4)])
    assert unb64(result["sound"]) == expected.astype("<i2").tobytes()
    assert result["sizes"] == [960]
    # The silence came at real-time pace (catching up after any late tick) for the outage.
    times = result["times"][first_silent : last_silent + 1]
    span = times[-1] - times[0]
    assert span > 1.0  # the scenario kept the device away for 1 s
    assert len(times) == pytest.approx(span / 0.02 + 1, abs=3)
    assert np.mean(np.diff(times)) == pytest.approx(0.02, rel=0.1)
    assert max(np.diff(times)) < 0.15
    assert result["lost_at"] <= times[0] + 0.05 and times[-1] <= result["back_at"]
    # Reopened by name; the loss logged once with its reason, the return at INFO.
    assert (result["name"], result["rate"]) == ("fakemic", 48000)
    (warning,) = child.messages("WARNING")
    assert warning == f"Microphone 'fakemic' lost: no audio for 0.5 s; reopening 'fakemic' {RETURN}"
    retries = [m for m in child.messages("DEBUG") if "still unavailable" in m]
    assert retries and all("'fakemic' exists but has no channels" in m for m in retries)
    infos = child.messages("INFO")
    assert len(infos) == 2
    assert infos[1].startswith("Microphone back after ")
    assert infos[1].endswith(": 'fakemic' (index 0), 48000 Hz, mono, period 20 ms, buffer 80 ms")


@pytest.mark.timeout(60)
def test_speaker_loss_blocks_nothing_and_reopens_by_name(card: FakeCard) -> None:
    child = run_child(card, "speaker_loss")
    result = child.result
    assert result["first_at"] >= 0 and result["second_at"] >= 0
    outage = result["during_outage"]
    assert outage["healthy"] is False
    assert outage["max_lag"] < 0.15  # a blocked loop would show 0.25 s or more
    assert result["name"] == "fakespk"
    (warning,) = child.messages("WARNING")
    assert warning == f"Speaker 'fakespk' lost: no audio for 0.5 s; reopening 'fakespk' {RETURN}"
    retries = [m for m in child.messages("DEBUG") if "still unavailable" in m]
    assert len(retries) >= 2  # backoff: 0.2, 0.4, 0.8 s ... within the 1 s outage
    assert all(m == "Speaker 'fakespk' still unavailable: the stream stopped" for m in retries)
    # The source was drained on the loop at real-time pace (50 periods a second), apart from
    # the moments a doomed stream was open (up to a watchdog tick, 0.1 s, each).
    assert 50 - 6 * len(retries) <= outage["source_reads"] <= 50 + len(retries) + 2
    infos = child.messages("INFO")
    assert infos[-1].startswith("Speaker back after ")


@pytest.mark.timeout(60)
def test_speaker_source_failure_aborts_the_stream_and_it_is_reopened(card: FakeCard) -> None:
    child = run_child(card, "speaker_source_error")
    assert child.result["healthy"] is True
    (warning,) = child.messages("WARNING")
    assert warning == (
        "Speaker 'fakespk' lost: the source failed: RuntimeError('boom'); reopening 'fakespk' "
        + RETURN
    )
    assert child.messages("INFO")[-1].startswith("Speaker back after ")


# ----------------------------------------------------------------------------------------------
# Tests of the pure parts (no PortAudio)


def test_negotiate_rate_order() -> None:
    def accepts(*rates: int) -> Callable[[int], bool]:
        return lambda rate: rate in rates

    assert negotiate_rate(16000, 44100, accepts(16000, 44100)) == 16000
    assert negotiate_rate(None, 44100, accepts(48000, 44100)) == 44100  # default first
    assert negotiate_rate(None, 96000, accepts(22050, 16000)) == 22050  # then the list
    assert negotiate_rate(None, 0, accepts(8000)) == 8000
    with pytest.raises(DeviceError, match=r"^mic does not accept 16000 Hz .* accepts: 48000$"):
        negotiate_rate(16000, 48000, accepts(48000), device="mic")
    with pytest.raises(DeviceError, match="accepts none of 48000, 44100"):
        negotiate_rate(None, 96000, accepts(96000 + 1))
    assert FALLBACK_RATES[0] == 48000


DEVICES = [
    DeviceInfo(0, "bcm2835 Headphones: - (hw:0,0)", 0, 8, 44100),
    DeviceInfo(1, "USB Audio Device: - (hw:1,0)", 1, 2, 48000),
    DeviceInfo(2, "USB Audio Device: - (hw:2,0)", 1, 0, 48000),
    DeviceInfo(3, "pulse", 32, 32, 44100),
    DeviceInfo(4, "default", 32, 32, 44100),
    DeviceInfo(5, "piagent_input", 2, 0, 48000),  # piagent's alias of an ALSA PCM string
]
CARDS = """\
 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [Device         ]: USB-Audio - USB Audio Device
                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.2
 2 [Device_1       ]: USB-Audio - USB Audio Device
                      C-Media Electronics Inc. USB Audio Device at usb-3f980000.usb-1.3
"""


@pytest.mark.parametrize(
    ("wanted", "is_input", "index"),
    [
        ("default", True, 4),
        ("pulse", False, 3),
        ("Headphones", False, 0),  # substring
        ("usb audio device: - (hw:2", True, 2),  # substring, any case
        ("hw:1,0", True, 1),
        ("hw:1", True, 1),  # not ambiguous with (hw:1,1)
        ("plughw:CARD=Device,DEV=0", True, 5),  # through piagent's alias: the plug kept
        ("sysdefault:CARD=Device", True, 5),
        ("hw:CARD=Device_1", True, 2),  # ALSA's stable name for the raw device
        ("plughw:2,0", True, 5),
        (4, True, 4),
        ("4", False, 4),  # digits: an index, when no name contains them
        ("3", False, 0),  # ... but names come first: "bcm2835" contains "3"
    ],
)
def test_resolve_device(wanted: str | int, is_input: bool, index: int) -> None:
    assert resolve_device(DEVICES, wanted, is_input=is_input, cards=CARDS).index == index


def test_resolve_device_errors() -> None:
    with pytest.raises(DeviceError, match="'USB' is ambiguous: it matches 'USB Audio Device"):
        resolve_device(DEVICES, "USB", is_input=True, cards=CARDS)
    # The headphones cannot capture; the error lists what can.
    with pytest.raises(DeviceError) as caught:
        resolve_device(DEVICES, "bcm2835 Headphones: - (hw:0,0)", is_input=True, cards=CARDS)
    message = str(caught.value)
    assert "exists but has no channels" in message
    assert "1: 'USB Audio Device: - (hw:1,0)'" in message and "4: 'default'" in message
    with pytest.raises(DeviceError, match="output device 2 not found; output devices: 0: "):
        resolve_device(DEVICES, 2, is_input=False, cards=CARDS)
    # No alias for playback: the ALSA PCM could not be opened when PortAudio enumerated.
    with pytest.raises(DeviceError) as caught:
        resolve_device(DEVICES, "plughw:CARD=Nope,DEV=0", is_input=False, cards=CARDS)
    assert str(caught.value) == (
        "output device 'plughw:CARD=Nope,DEV=0': ALSA cannot open it for playback (sound "
        "cards: 0 [Headphones], 1 [Device], 2 [Device_1]); check that its card is connected "
        "and the name is right (`aplay -L` lists ALSA's names)"
    )
    with pytest.raises(DeviceError) as caught:
        resolve_device(DEVICES, "hw:CARD=Nope,DEV=0", is_input=True, cards=CARDS)
    assert str(caught.value) == (
        "input device 'hw:CARD=Nope,DEV=0': its sound card does not exist (sound cards: "
        "0 [Headphones], 1 [Device], 2 [Device_1]); check that it is connected "
        "(run `piagent devices`)"
    )
    with pytest.raises(DeviceError, match=r"'hw:1,3': hw:1,3 is not listed \(sound cards"):
        resolve_device(DEVICES, "hw:1,3", is_input=True, cards=CARDS)
    with pytest.raises(DeviceError, match=r"input devices: none \(run `piagent devices`\)$"):
        resolve_device([], "default", is_input=True, cards=CARDS)


def test_alsa_hw_name() -> None:
    assert alsa_hw_name("hw:CARD=Device,DEV=0", CARDS) == "hw:1,0"
    assert alsa_hw_name("hw:Device_1", CARDS) == "hw:2,0"
    assert alsa_hw_name("hw:1", CARDS) == "hw:1,0"
    assert alsa_hw_name("hw:CARD=Gone", CARDS) is None
    assert alsa_hw_name("default", CARDS) is None
    assert alsa_hw_name("sysdefault:CARD=Device", CARDS) is None


def test_format_devices_table() -> None:
    rows = [
        DeviceInfo(0, "fakemic", 128, 128, 44100, (8000, 11025, 48000), (48000,)),
        DeviceInfo(12, "USB Audio Device: - (hw:1,0)", 1, 0, 48000, (16000, 48000), ()),
        DeviceInfo(13, "DAC: - (hw:2,0)", 0, 2, 48000, (), (48000,), output_rate_channels=2),
    ]
    assert format_devices(rows).splitlines() == [
        "index  name                           in  out  default Hz  input kHz    output kHz",
        "    0  fakemic                       128  128       44100  8 11.025 48  48",
        "   12  USB Audio Device: - (hw:1,0)    1    0       48000  16 48        -",
        "   13  DAC: - (hw:2,0)                 0    2       48000  -            48 (2 ch)",
    ]


def test_microphone_yields_paced_silence_until_it_opens() -> None:
    """No device opened at all (no PortAudio): the frames still come, in real time."""

    async def main() -> tuple[list[Samples], float]:
        mic = Microphone(AudioInputConfig(device="anything", rate=16000, chunk_ms=10))
        loop = asyncio.get_running_loop()
        start = loop.time()
        frames = [await mic.read() for _ in range(11)]
        return frames, loop.time() - start

    frames, elapsed = asyncio.run(main())
    assert all(f.dtype == np.int16 and f.shape == (160,) and not f.any() for f in frames)
    assert 0.1 <= elapsed < 0.3  # the first at once, then one every 10 ms


def test_constructors_validate() -> None:
    with pytest.raises(ValueError, match="queue_frames"):
        Microphone(AudioInputConfig(), queue_frames=0)
    with pytest.raises(ValueError, match="period_ms"):
        Speaker(AudioOutputConfig(), period_ms=0)
    with pytest.raises(DeviceError, match="call open"):
        _ = Microphone(AudioInputConfig()).rate
    assert Speaker(AudioOutputConfig(device="x", rate=8000)).name == "x"
