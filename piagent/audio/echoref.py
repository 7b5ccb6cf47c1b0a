"""The far-end reference: what the speaker played, found again for each mic period.

Owns ``EchoReference``, a ring of the samples each speaker period played, placed on a shared
timeline of sample positions at ``rate`` Hz (position = time since an origin both sides agree
on, times the rate; ``timeline_position`` converts), and ``DelayEstimator``, which measures
how far behind the speaker the mic hears it (device buffers plus the air) by cross-correlating
the two, so the canceller gets a reference whose echo is actually in the frame it cancels.

The speaker side calls ``record(samples, dac_position)`` once per period: ``dac_position`` is
where the period's first sample reaches the DAC (PortAudio's ``outputBufferDacTime``, or the
``wav`` backend's file position). The mic side asks ``aligned(adc_position, n)`` for the
reference of the frame whose first sample the ADC took at ``adc_position``
(``inputBufferAdcTime``): the samples played ``latency`` earlier, silence where nothing was
recorded. ``latency`` starts at the configured value and is moved by ``DelayEstimator``.

Independent of PortAudio and asyncio: numpy only, fed by either backend.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from piagent.audio.codecs import Samples

__all__ = ["DelayEstimator", "EchoReference", "timeline_position"]

_Float = npt.NDArray[np.float64]


def timeline_position(time_s: float, origin_s: float, rate: int) -> int:
    """The sample position of an instant: ``round((time_s - origin_s) * rate)``."""
    return round((time_s - origin_s) * rate)


class EchoReference:
    """A ring of ``capacity_s`` seconds of played samples at ``rate`` Hz, by timeline position.

    ``latency_samples`` is how long after the DAC the mic hears the sound (samples; the bulk
    delay the canceller need not model). Positions only move forward; a period recorded over
    an earlier one replaces it (a flush that rewrote what was queued).
    """

    def __init__(self, rate: int = 16000, *, capacity_s: float = 2.0, latency_ms: float = 0.0):
        if rate <= 0 or capacity_s <= 0:
            raise ValueError("rate and capacity_s must be positive")
        self._rate = rate
        self._ring = np.zeros(int(rate * capacity_s), dtype=np.int16)
        self._end: int | None = None  # one past the newest recorded position
        self.latency_samples = round(rate * latency_ms / 1000)

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def end(self) -> int | None:
        """One past the newest position recorded (None before the first period)."""
        return self._end

    def record(self, samples: Samples, dac_position: int) -> None:
        """The speaker played ``samples`` (int16 at ``rate``), the first at ``dac_position``."""
        size = len(self._ring)
        n = len(samples)
        if n == 0:
            return
        if n > size:  # only the newest capacity fits
            samples, dac_position, n = samples[n - size :], dac_position + n - size, size
        if self._end is not None and dac_position > self._end:
            self._write(np.zeros(min(dac_position - self._end, size), np.int16), self._end)
        self._write(samples, dac_position)
        self._end = dac_position + n if self._end is None else max(self._end, dac_position + n)

    def _write(self, samples: Samples, position: int) -> None:
        size = len(self._ring)
        index = np.arange(position, position + len(samples)) % size
        self._ring[index] = samples

    def history(self, position: int, n: int) -> Samples:
        """The ``n`` samples played from ``position`` on; silence for any not in the ring."""
        out = np.zeros(n, dtype=np.int16)
        if self._end is None or n <= 0:
            return out
        oldest = self._end - len(self._ring)
        lo, hi = max(position, oldest), min(position + n, self._end)
        if lo < hi:
            out[lo - position : hi - position] = self._ring[np.arange(lo, hi) % len(self._ring)]
        return out

    def aligned(self, adc_position: int, n: int) -> Samples:
        """The reference for the mic frame of ``n`` samples whose first was captured at
        ``adc_position``: what played ``latency_samples`` before it."""
        return self.history(adc_position - self.latency_samples, n)


class DelayEstimator:
    """Measures the speaker-to-mic delay by GCC-PHAT over windows of ``window_s`` seconds
    (a regularised phase transform; a peak must stand 6 standard deviations out).

    Feed ``observe(near, adc_position)`` with every mic frame (the raw mic, before the
    canceller). Once a window has enough far-end sound, the lag in ``[0, max_delay_ms]`` where
    the mic best matches the reference is a candidate; two windows in a row agreeing within
    ``tolerance_ms`` make it the ``estimate`` (samples). ``apply`` sets the reference's latency
    to the estimate less ``margin_ms``, so the canceller's filter keeps a few taps of lead for
    the direct path.
    """

    def __init__(
        self,
        reference: EchoReference,
        *,
        max_delay_ms: float = 400.0,
        window_s: float = 0.5,
        tolerance_ms: float = 2.0,
        margin_ms: float = 5.0,
        min_far_dbfs: float = -45.0,
    ) -> None:
        self._ref = reference
        rate = reference.rate
        self._max_lag = round(rate * max_delay_ms / 1000)
        self._window = round(rate * window_s)
        self._tolerance = round(rate * tolerance_ms / 1000)
        self._margin = round(rate * margin_ms / 1000)
        self._min_far = 10.0 ** (min_far_dbfs / 10.0) * 32768.0**2
        self._near: list[Samples] = []
        self._count = 0
        self._start: int | None = None
        self._candidate: int | None = None
        self.estimate: int | None = None
        self.windows = 0  # windows analysed

    def observe(self, near: Samples, adc_position: int) -> int | None:
        """Take one mic frame; returns a new estimate (samples) when one was just made."""
        if self._start is None or adc_position != self._start + self._count:
            self._near, self._count, self._start = [], 0, adc_position  # a gap: start over
        self._near.append(near)
        self._count += len(near)
        if self._count < self._window:
            return None
        mic = np.concatenate(self._near)[: self._window].astype(np.float64)
        start = self._start
        self._near, self._count, self._start = [], 0, start + self._window
        far = self._ref.history(start - self._max_lag, self._window + self._max_lag)
        far_f = far.astype(np.float64)
        if float(np.mean(far_f[self._max_lag :] ** 2)) < self._min_far:
            return None
        lag = self._best_lag(mic, far_f)
        self.windows += 1
        if lag is None:
            self._candidate = None
            return None
        agreed = self._candidate is not None and abs(lag - self._candidate) <= self._tolerance
        self._candidate = lag
        if agreed and lag != self.estimate:
            self.estimate = lag
            return lag
        return None

    def _best_lag(self, mic: _Float, far: _Float) -> int | None:
        """The lag (samples) maximising the phase-transformed cross-correlation, or None when
        its peak does not stand out (no echo, or the user talking over it)."""
        size = 1 << int(np.ceil(np.log2(len(far) + len(mic))))
        spectrum = np.fft.rfft(far, size) * np.conj(np.fft.rfft(mic, size))
        # Phase transform, regularised: whitening bins the speech never reached (below 100 Hz,
        # above 4 kHz) would only amplify noise into false peaks.
        magnitude = np.abs(spectrum)
        spectrum /= magnitude + 0.1 * float(np.mean(magnitude)) + 1e-9
        # lags[m] = sum over t of mic[t] * far[t + m]; the mic at t hears far[t + max_lag - d].
        lags = np.fft.irfft(spectrum, size)[: self._max_lag + 1]
        m = int(np.argmax(np.abs(lags)))
        peak = abs(float(lags[m]))
        spread = float(np.std(lags)) + 1e-12
        if peak < 6.0 * spread:
            return None
        return self._max_lag - m

    def apply(self) -> None:
        """Set the reference's latency from the estimate (nothing before there is one)."""
        if self.estimate is not None:
            self._ref.latency_samples = max(0, self.estimate - self._margin)
