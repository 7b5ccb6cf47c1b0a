"""The ALSA fake sound card of testing.md, for tests of the real PortAudio/ALSA path.

``write_fake_card(tmp_path)`` writes an ALSA configuration that replaces the system's entirely
and returns a :class:`FakeCard`, whose ``env()`` goes into a child process's environment (or
``apply()`` into this process's, before its first ``pyaudio.PyAudio()``: alsa-lib and PortAudio
read the configuration once). The devices PortAudio then lists:

    fakemic   capture reads the file $FAKE_MIC_FILE (raw S16_LE, from offset 0 at each open;
              default /dev/zero); playback is discarded. When $FAKE_MIC_FILE does not exist,
              PortAudio lists it with no input channels.
    fakespk   playback writes the file $FAKE_SPK_FILE (raw S16_LE; default /dev/null); a file
              that cannot be created makes a started stream fail after its first period.
    fake48k   fakemic/null, but opens at 48000 Hz only (a plug whose rate converter does not
              exist: any other rate fails, printing ALSA errors on stderr); default rate 48000.
    fake22k   the same at 22050 Hz only.
    stereomic capture reads $FAKE_STEREO_MIC_FILE (raw S16_LE, 2 channels interleaved; default
              /dev/zero); 2 channels only: ``arecord -c 1`` fails (a ``type multi`` of two
              1-channel null slaves under a file plugin, with no plug in between).
    stereospk playback writes $FAKE_STEREO_SPK_FILE (2 channels interleaved); 2 channels only.
              ``aplay`` plays through it, but a PortAudio callback stream stalls after its
              first two periods (the multi plugin over clockless null slaves).
    default   capture from fakemic, playback to fakespk.

Not listed by PortAudio, as a real system's arguments-taking PCMs (plughw:, sysdefault:):

    plug:PCM  ALSA's own plug plugin over PCM (the real alsa.conf defines it the same way).
    latespk   playback to the PCM named by $FAKE_LATE_SPK; fails to open while it is unset (a
              card not plugged in yet): PortAudio then leaves it out.

Every PCM accepts any rate and channel count except fake48k, fake22k (one rate) and the
stereo ones (two channels); the default rate PortAudio reports is 44100 but for fake48k/22k.
Opening a stereo PCM costs its process a lot of memory traffic: the multi plugin silences its
slaves' whole buffer at each hw_params, and over null slaves ALSA's choice of buffer is its
longest, about 4295 s at the rate asked (800 MB at 48 kHz per slave). glibc hands such
blocks back to the system at each close, so each of the dozens of opens a device listing
makes faulted them in afresh (over 10 s for one ``list_devices``). ``env()`` therefore asks
glibc (``GLIBC_TUNABLES``) to keep freed memory and reuse it: about 2 s. Nothing a device
does changes.

There is no clock: streams run as fast as the CPU allows. :class:`Fifo` gives the card one:
capture from a FIFO blocks once the bytes written into it are used up, playback into one
blocks once the pipe is full, until the test writes or reads more. (PortAudio cannot close a
stream whose thread is blocked on a FIFO: write, read or ``close()`` the FIFO first.)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Names PortAudio hides (hw plughw plug dsnoop tee file null shm cards rate_convert) are
# avoided; pcm.!default must exist or PortAudio aborts the process in PyAudio().
ALSA_CONFIG = """\
pcm.!default { type asym; playback.pcm "fakespk"; capture.pcm "fakemic" }
pcm.fakemic {
    type file
    slave.pcm { type null }
    format "raw"
    file "/dev/null"
    infile { @func getenv vars [ FAKE_MIC_FILE ] default "/dev/zero" }
}
pcm.fakespk {
    type file
    slave.pcm { type null }
    format "raw"
    file { @func getenv vars [ FAKE_SPK_FILE ] default "/dev/null" }
}
pcm.fake48k {
    type plug
    slave { pcm "fakemic"; rate 48000 }
    rate_converter "piagent_test_no_such_converter"
}
pcm.fake22k {
    type plug
    slave { pcm "fakemic"; rate 22050 }
    rate_converter "piagent_test_no_such_converter"
}
pcm.stereomic {
    type file
    slave.pcm {
        type multi  # two 1-channel slaves: exactly 2 channels, no conversion in between
        slaves.a { pcm { type null }; channels 1 }
        slaves.b { pcm { type null }; channels 1 }
        bindings.0 { slave a; channel 0 }
        bindings.1 { slave b; channel 0 }
    }
    format "raw"
    file "/dev/null"
    infile { @func getenv vars [ FAKE_STEREO_MIC_FILE ] default "/dev/zero" }
}
pcm.stereospk {
    type file
    slave.pcm {
        type multi  # two 1-channel slaves: exactly 2 channels, no conversion in between
        slaves.a { pcm { type null }; channels 1 }
        slaves.b { pcm { type null }; channels 1 }
        bindings.0 { slave a; channel 0 }
        bindings.1 { slave b; channel 0 }
    }
    format "raw"
    file { @func getenv vars [ FAKE_STEREO_SPK_FILE ] default "/dev/null" }
}
pcm.latespk {
    type asym
    playback.pcm { @func getenv vars [ FAKE_LATE_SPK ] default "piagent_test_absent" }
}
pcm.plug {
    @args [ SLAVE ]
    @args.SLAVE { type string }
    type plug
    slave.pcm $SLAVE
}
"""

FAKE_DEVICES = ("fakemic", "fakespk", "fake48k", "fake22k", "stereomic", "stereospk", "default")

# glibc's allocator in the processes that use the card: every block from the heap (no mmap of
# its own) and no heap trimming, so that freed buffers are reused (see the module docstring).
ALLOCATOR_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


@dataclass(frozen=True, slots=True)
class FakeCard:
    """Where a fake card's configuration is and which files its devices use."""

    config: Path
    mic_file: Path
    spk_file: Path
    stereo_mic_file: Path = Path("/dev/zero")
    stereo_spk_file: Path = Path(os.devnull)

    def env(self) -> dict[str, str]:
        """The variables that select this card and its files, and glibc's tunables for a
        process that opens its stereo PCMs (added to this process's own, if any)."""
        tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), ALLOCATOR_TUNABLES]))
        return {
            "ALSA_CONFIG_PATH": str(self.config),
            "FAKE_MIC_FILE": str(self.mic_file),
            "FAKE_SPK_FILE": str(self.spk_file),
            "FAKE_STEREO_MIC_FILE": str(self.stereo_mic_file),
            "FAKE_STEREO_SPK_FILE": str(self.stereo_spk_file),
            "GLIBC_TUNABLES": tunables,
        }

    def apply(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Put ``env()`` into ``environ`` (this process's environment by default)."""
        (os.environ if environ is None else environ).update(self.env())


def write_fake_card(
    directory: Path,
    *,
    mic_file: Path = Path("/dev/zero"),
    spk_file: Path = Path(os.devnull),
    stereo_mic_file: Path = Path("/dev/zero"),
    stereo_spk_file: Path = Path(os.devnull),
) -> FakeCard:
    """Write the fake card's configuration into ``directory`` (see the module docstring)."""
    config = directory / "asound.conf"
    config.write_text(ALSA_CONFIG, encoding="utf-8")
    return FakeCard(config, mic_file, spk_file, stereo_mic_file, stereo_spk_file)


class Fifo:
    """A named pipe held open for reading and writing by the test, so that opening it never
    blocks and its contents survive PortAudio opening and closing the device.

    As ``FAKE_MIC_FILE``: ``write`` what the microphone captures. As ``FAKE_SPK_FILE``:
    ``read`` what the speaker played. ``close()`` ends it (capture then reads end-of-file,
    playback fails), which also unblocks a stream waiting on it.
    """

    def __init__(self, path: Path, capacity: int | None = None) -> None:
        self.path = path
        os.mkfifo(path)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        if capacity is not None:  # the system's default is 64 KiB; it may cap this
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, capacity)
        self.capacity: int = fcntl.fcntl(self._fd, fcntl.F_GETPIPE_SZ)

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError("the FIFO is closed")
        return self._fd

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        """Queue ``samples`` (raw S16_LE) for capture; they must fit in the pipe."""
        data = samples.astype("<i2").tobytes()
        written = os.write(self._fileno(), data)
        if written != len(data):
            raise OverflowError(f"the pipe took {written} of {len(data)} bytes")

    def read(self, limit: int = 1 << 20) -> bytes:
        """What playback has written and the test has not read yet (at most ``limit`` bytes)."""
        try:
            return os.read(self._fileno(), limit)
        except BlockingIOError:  # nothing written yet
            return b""

    def close(self) -> None:
        """Close the test's end (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Close and delete the FIFO: a capture device on it then disappears."""
        self.close()
        self.path.unlink(missing_ok=True)
