"""Near-end speech detection on the cancelled mic signal: "the user is talking over the agent".

Owns ``NearEndDetector``. It runs after the echo canceller, one 10 ms frame at a time, and
must be fast (barge-in has 150 ms from the user's first syllable to silence, the playback
flush included) without ever firing on the agent's own residual echo. Per frame it compares
the cleaned frame's level with two bounds:

* an absolute floor (``floor_dbfs``): quieter than this is room noise, not a talker;
* the residual echo bound: the far end's level, held for ``far_hold_frames`` (a reference
  still slightly misaligned) and then decayed through the room's reverb
  (``far_decay_db_per_frame``), plus the residual-to-far ratio the canceller has been leaving,
  plus ``margin_db``. That ratio is learnt while the far end plays and nobody is detected, as a
  high quantile (``quantile``) of the per-frame ratio, so it follows the canceller's state: loud
  before it converges, low once it has. It starts at ``initial_ratio_db`` (0: a residual as
  loud as the far end, i.e. no cancellation yet), so a fresh canceller cannot cause an onset.

A frame above both bounds is a candidate; ``onset_frames`` candidates in a row (one miss
forgiven) make an onset, and ``release_frames`` quiet frames end the episode. With no far-end
sound the second bound drops out, so the same detector serves as a plain voice-activity gate.

Pure: piagent's level arithmetic only; no devices.
"""

from __future__ import annotations

from typing import Final

from piagent.audio.codecs import Samples
from piagent.audio.levels import FLOOR_DBFS, rms_dbfs

__all__ = ["NearEndDetector"]

_SILENT_DB: Final = FLOOR_DBFS


class NearEndDetector:
    """Decides, frame by frame, whether the near end (the user) is talking.

    ``update(cleaned, far)`` takes the canceller's output frame and the aligned reference
    frame it cancelled (or the reference level in dBFS) and returns True on the frame where
    an onset is decided; ``talking`` says whether an episode is under way.
    """

    def __init__(
        self,
        *,
        floor_dbfs: float = -48.0,
        margin_db: float = 9.0,
        initial_ratio_db: float = 0.0,
        quantile: float = 0.9,
        step_db: float = 1.0,
        far_active_dbfs: float = -55.0,
        far_decay_db_per_frame: float = 3.0,
        far_hold_frames: int = 20,
        onset_frames: int = 3,
        release_frames: int = 30,
    ) -> None:
        if onset_frames < 1 or release_frames < 1:
            raise ValueError("onset_frames and release_frames must be at least 1")
        self._floor = floor_dbfs
        self._margin = margin_db
        self._quantile = quantile
        self._step = step_db
        self._far_active = far_active_dbfs
        self._decay = far_decay_db_per_frame
        self._hold = far_hold_frames
        self._held = 0  # frames since the far envelope's last peak
        self._onset = onset_frames
        self._release = release_frames
        self._initial_ratio = initial_ratio_db
        self._ratio = initial_ratio_db  # residual over far, learnt (dB)
        self._far_env = _SILENT_DB
        self._run = 0  # candidate frames in the current run
        self._missed = 0  # misses forgiven in the current run
        self._quiet = 0  # non-candidate frames since the episode's last candidate
        self._talking = False
        self.onsets = 0

    @property
    def talking(self) -> bool:
        """Whether the near end is talking (from onset until ``release_frames`` of quiet)."""
        return self._talking

    @property
    def residual_ratio_db(self) -> float:
        """The residual echo level relative to the far end that the detector expects (dB)."""
        return self._ratio

    @property
    def far_envelope_dbfs(self) -> float:
        """The far end's level held through the reverb (dBFS)."""
        return self._far_env

    @property
    def far_playing(self) -> bool:
        """Whether the far end (held through the reverb) is audible: its echo may be about."""
        return self._far_env > self._far_active

    def threshold_dbfs(self) -> float:
        """The level a cleaned frame must exceed to count now (dBFS)."""
        if self._far_env <= self._far_active:
            return self._floor
        return max(self._floor, self._far_env + self._ratio + self._margin)

    def update(self, cleaned: Samples, far: Samples | float) -> bool:
        """Take one frame; True when this frame decides an onset (once per episode)."""
        far_db = far if isinstance(far, float) else rms_dbfs(far)
        if far_db >= self._far_env:
            self._far_env, self._held = far_db, 0
        else:
            self._held += 1
            if self._held > self._hold:
                self._far_env = max(far_db, self._far_env - self._decay)
        level = rms_dbfs(cleaned)
        candidate = level > self.threshold_dbfs()
        far_playing = self._far_env > self._far_active
        if far_playing and not self._talking:
            # Candidates count too, so a residual that jumped (the echo path changed) is chased
            # at once; a talker's first frames move the ratio by at most onset * step.
            self._learn(level - self._far_env)
        return self._advance(candidate)

    def _learn(self, ratio_db: float) -> None:
        # Stochastic quantile tracking: up by step * q when above, down by step * (1 - q).
        if ratio_db > self._ratio:
            self._ratio += self._step * self._quantile
        else:
            self._ratio -= self._step * (1.0 - self._quantile)

    def _advance(self, candidate: bool) -> bool:
        if self._talking:
            self._quiet = 0 if candidate else self._quiet + 1
            if self._quiet >= self._release:
                self._talking = False
                self._run = self._missed = 0
            return False
        if candidate:
            self._run += 1
        elif self._run and not self._missed:
            self._missed = 1  # one dip inside a syllable is forgiven
        else:
            self._run = self._missed = 0
        if self._run >= self._onset:
            self._talking = True
            self._quiet = 0
            self.onsets += 1
            return True
        return False

    def realign(self) -> None:
        """The reference was moved (a new delay estimate): the canceller reconverges, so the
        residual ratio learnt so far no longer holds; start again from the cautious one."""
        self._ratio = max(self._ratio, self._initial_ratio)

    def reset(self) -> None:
        """Forget the episode and the learnt ratio (after the canceller was reset)."""
        self._ratio = self._initial_ratio
        self._far_env = _SILENT_DB
        self._held = 0
        self._run = self._missed = self._quiet = 0
        self._talking = False
