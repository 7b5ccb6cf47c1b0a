"""piagent.audio.room and the ``wav`` backend's echo path (``audio.input.echo``).

The room: a bulk delay and gain land where they should, chunking never shows, the response is
a real convolution, a path change moves the echo, soft clipping bends only loud peaks. The wav
backend: a microphone linked to a speaker hears what it played, through the configured path,
at the sample the delay says, also across a rate change (48 kHz speaker, 16 kHz mic).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest

from piagent.audio.room import Room, load_impulse_response, soft_clip, synthetic_impulse_response
from piagent.audio.wavio import WavEchoPath, WavMicrophone, WavSpeaker
from tests.audio.speechlike import speechlike
from tests.audio.test_wavio import write_wav


def impulse(n: int, at: int, value: int = 10000) -> np.ndarray:
    x = np.zeros(n, dtype=np.int16)
    x[at] = value
    return x


def test_delay_and_gain_put_the_impulse_where_they_say() -> None:
    room = Room(16000, delay_ms=50, gain_db=-6.0206)
    out = room.process(impulse(2000, 100))
    assert int(np.argmax(np.abs(out))) == 100 + 800
    assert out[900] == 5000
    assert np.count_nonzero(out) == 1


def test_streaming_in_any_chunks_equals_one_block() -> None:
    x = speechlike(1.0, seed=3)
    ir = synthetic_impulse_response(16000, length_ms=60)
    whole = Room(16000, delay_ms=33, gain_db=-3, impulse_response=ir).process(x)
    room = Room(16000, delay_ms=33, gain_db=-3, impulse_response=ir)
    cuts = [0, 1, 7, 160, 161, 999, 5000, 9000, len(x)]
    parts = [room.process(x[a:b]) for a, b in itertools.pairwise(cuts)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_the_response_is_a_convolution() -> None:
    x = speechlike(0.5, seed=4, level_dbfs=-30)
    ir = synthetic_impulse_response(16000, length_ms=20, seed=9)
    out = Room(16000, impulse_response=ir).process(x)
    expected = np.convolve(x.astype(float), ir)[: len(x)]
    assert np.max(np.abs(out - expected)) <= 1.0


def test_synthetic_response_has_unit_energy_and_decays() -> None:
    ir = synthetic_impulse_response(16000, rt60_ms=200, length_ms=200)
    assert np.sum(ir**2) == pytest.approx(1.0)
    first, last = ir[32:800], ir[-800:]
    assert np.sum(last**2) < np.sum(first**2) / 100


def test_a_path_change_moves_the_echo() -> None:
    room = Room(16000, delay_ms=10)
    room.process(np.zeros(1000, dtype=np.int16))
    room.change_path(delay_ms=30, gain_db=0)
    out = room.process(impulse(2000, 0))
    assert int(np.argmax(np.abs(out))) == 480


def test_soft_clipping_bends_loud_peaks_only() -> None:
    x = np.array([0.01, 0.5, 1.0])
    y = soft_clip(x, 1.5)
    assert y[0] == pytest.approx(0.01, rel=1e-3)
    assert y[2] < 0.7
    assert soft_clip(x, 0.0) is x


def test_an_impulse_response_file_is_resampled_and_normalised(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "ir.wav", impulse(4800, 0, 20000), 48000)
    ir = load_impulse_response(path, 16000)
    assert len(ir) == pytest.approx(1600, abs=40)
    assert np.sum(ir**2) == pytest.approx(1.0)


class Burst:
    """A speaker source: silence, then one loud burst at ``at`` samples, then silence."""

    def __init__(self, at: int, burst: np.ndarray) -> None:
        self.at, self.burst, self.pos = at, burst, 0

    def read(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        lo, hi = max(self.at, self.pos), min(self.at + len(self.burst), self.pos + n)
        if lo < hi:
            out[lo - self.pos : hi - self.pos] = self.burst[lo - self.at : hi - self.at]
        self.pos += n
        return out


def test_the_echo_path_aligns_the_two_timelines_to_the_sample() -> None:
    """Offline: the speaker starts at t=10.0 at 16 kHz; the mic's capture at t=10.1."""
    path = WavEchoPath(16000, delay_ms=25, gain_db=0)
    path.start_speaker(10.0, 16000)
    path.played(impulse(4000, 2000))  # plays at 10.125 s; heard at 10.150 s
    heard = np.concatenate([path.heard(10.1, k * 160, 160) for k in range(20)])
    assert int(np.argmax(np.abs(heard))) == 800  # 50 ms after the capture started
    assert path.heard(10.1, 3200, 160).sum() == 0  # past what was played: silence


def test_the_wav_microphone_hears_the_speaker_through_the_path(tmp_path: Path) -> None:
    """Real time, as the daemon runs them: a 48 kHz speaker, a 16 kHz microphone file of
    silence, a 40 ms path 6 dB down; the burst arrives where the two clocks say it should."""
    mic_file = write_wav(tmp_path / "mic.wav", np.zeros(16000, dtype=np.int16), 16000)
    path = WavEchoPath(16000, delay_ms=40, gain_db=-6)
    burst = speechlike(0.2, seed=5, level_dbfs=-12)  # 16 kHz; played at 48 kHz below
    burst48 = np.repeat(burst, 3)
    source = Burst(48000 * 3 // 10, burst48)  # at 0.3 s of the speaker's timeline
    speaker = WavSpeaker(tmp_path / "spk.wav", 48000, source, echo=path)
    starts: list[float] = []

    async def scenario() -> np.ndarray:
        loop = asyncio.get_running_loop()

        def clock() -> float:
            now = loop.time()
            if not starts:
                starts.append(now)
            return now

        mic = WavMicrophone(mic_file, chunk_ms=20, clock=clock, echo=path)
        task = asyncio.create_task(speaker.run())
        await asyncio.sleep(0.05)
        got = []
        async for frame in mic.frames():
            got.append(frame)
            if len(got) == 40:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return np.concatenate(got)

    heard = asyncio.run(scenario())
    assert speaker.start_time is not None
    expected = round((speaker.start_time + 0.3 + 0.040 - starts[0]) * 16000)
    corr = np.correlate(heard.astype(float), burst.astype(float), mode="valid")
    assert abs(int(np.argmax(corr)) - expected) <= 1
    level = float(np.dot(heard, heard.astype(float))) / float(np.dot(burst, burst.astype(float)))
    assert 10 * np.log10(level) == pytest.approx(-6, abs=0.5)


def test_a_microphone_refuses_an_echo_path_at_another_rate(tmp_path: Path) -> None:
    mic_file = write_wav(tmp_path / "mic.wav", np.zeros(160, dtype=np.int16), 16000)
    mic = WavMicrophone(mic_file)
    with pytest.raises(ValueError, match="48000 Hz"):
        mic.echo = WavEchoPath(48000)
    mic.echo = path = WavEchoPath(mic.rate)
    assert mic.echo is path
