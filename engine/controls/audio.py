"""Audio input: level, onsets, bands, tempo and beats as `audio:*` bus sources, live or from a file.

One streaming `Analyser` (numpy FFT only) is used everywhere: by the live `AudioSource` thread, fed by a
microphone (sounddevice, when it and PortAudio are installed) or by a file played at wall-clock pace, and
by `AudioAnalysis`, which runs it over a whole file once so that offline rendering can ask for the
features at any show time, in any order, and get the same values (`features_at(t)`).

Features, per frame of `n_fft` samples every `hop` (frame k ends at sample (k + 1) * hop; its time is a quarter
window earlier, where the rising Hann window is steepest, so that a click's onset lands on the click):
- `audio:level` 0..1: the window's RMS in dB, -60 dB (`floor_db`) -> 0, a full-scale sine -> 1.
- `audio:low`, `audio:mid`, `audio:high` 0..1: the mean square of each band (20-250 Hz, 250-2000 Hz,
  2-16 kHz) from a Hann-windowed power spectrum, on the same dB scale as the level.
- `audio:onset` (trigger, 1): spectral flux of the log-compressed magnitude (Dixon, "Onset Detection
  Revisited", DAFx 2006): a local peak above `delta + mult * median` of the last 0.5 s, at least 50 ms after
  the previous one. Deciding a peak needs the next frame: one hop of latency.
- `audio:tempo` (BPM, raw, e.g. 60..200; bind it with `input = [60, 200]`): the autocorrelation of the last
  8 s of flux, weighted by a log-normal prior around 120 BPM against octave errors, every 0.5 s.
- `audio:beat` (trigger, 1): on an onset near the expected beat, else predicted one period after the last.
"""

from __future__ import annotations

import math
import os
import queue
import wave
from dataclasses import dataclass, field

import numpy as np

from engine.controls.source import DeviceLost, Source

try:  # PortAudio is a system library: without it there is no live input, but files still work
    import sounddevice
except (ImportError, OSError) as e:  # OSError: sounddevice is installed but libportaudio2 is not
    sounddevice = None
    SOUNDDEVICE_MISSING = f"live audio input needs sounddevice and PortAudio (apt install libportaudio2): {e}"
else:
    SOUNDDEVICE_MISSING = ""

AUDIO_EXTENSIONS = {".wav", ".wave", ".aif", ".aiff", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
CONTINUOUS = ("level", "low", "mid", "high")


@dataclass(frozen=True)
class AnalyserConfig:
    n_fft: int = 2048
    hop: int = 512
    floor_db: float = -60.0
    bands: tuple[tuple[float, float], ...] = ((20.0, 250.0), (250.0, 2000.0), (2000.0, 16000.0))
    compression: float = 100.0  # log(1 + compression * amplitude) before the flux
    onset_delta: float = 0.02  # absolute part of the threshold (flux units): silence and hiss stay quiet
    onset_mult: float = 1.5  # times the median flux of the last `onset_window` seconds
    onset_window: float = 0.5
    min_gap: float = 0.05  # seconds between onsets
    tempo_window: float = 8.0  # seconds of flux for the autocorrelation
    tempo_min_history: float = 2.5  # no tempo before this much audio
    tempo_every: float = 0.5
    bpm_range: tuple[float, float] = (60.0, 200.0)
    bpm_prior: float = 120.0  # the centre of the log-normal weight (one octave wide)


@dataclass
class Frame:
    time: float  # seconds from the start of the stream: the window's end less n_fft / 4
    level: float
    low: float
    mid: float
    high: float
    onset: bool = False
    beat: bool = False
    tempo: float = 0.0  # BPM; 0 until there is an estimate

    def features(self) -> dict[str, float]:
        return {"audio:level": self.level, "audio:low": self.low, "audio:mid": self.mid, "audio:high": self.high,
                "audio:onset": float(self.onset), "audio:beat": float(self.beat), "audio:tempo": self.tempo}


@dataclass
class _Beats:
    period: float = 0.0  # frames per beat
    last: float | None = None  # frame of the last beat
    predicted: bool = False  # the last beat was predicted, not heard


class Analyser:
    """Mono float samples in, `Frame`s out, causally (one hop of lookahead for onset peaks)."""

    def __init__(self, sample_rate: int, config: AnalyserConfig = AnalyserConfig()):
        c = self.config = config
        self.sr = int(sample_rate)
        self.window = np.hanning(c.n_fft).astype(np.float64)
        freqs = np.fft.rfftfreq(c.n_fft, 1.0 / self.sr)
        self.band_bins = [(freqs >= lo) & (freqs < min(hi, self.sr / 2)) for lo, hi in c.bands]
        self.power_scale = 2.0 / (c.n_fft * float((self.window ** 2).sum()))  # one-sided power -> mean square
        self.amp_scale = 2.0 / float(self.window.sum())  # |X| -> a sine's amplitude
        self._buffer = np.zeros(c.n_fft - c.hop, np.float64)  # the window's past: zeros before the start
        self._k = 0  # frames computed
        self._prev_log: np.ndarray | None = None
        self._pending: Frame | None = None  # frame k waits for frame k+1 to decide its onset
        self._pending_flux = 0.0
        self._flux_before = 0.0  # flux of frame k-1
        n = int(round(c.onset_window * self.sr / c.hop))
        self._recent = np.zeros(max(1, n))  # last flux values (ring) for the adaptive threshold
        self._recent_n = 0
        self._last_onset = -math.inf
        self._env = np.zeros(int(round(c.tempo_window * self.sr / c.hop)))  # flux history (ring)
        self._env_n = 0
        self._tempo = 0.0
        self._beats = _Beats()

    @property
    def frame_seconds(self) -> float:
        return self.config.hop / self.sr

    def feed(self, samples: np.ndarray) -> list[Frame]:
        """Append samples (1-D float, -1..1); return the frames finalised by them, oldest first."""
        c = self.config
        x = np.concatenate([self._buffer, np.asarray(samples, np.float64).reshape(-1)])
        n = (len(x) - (c.n_fft - c.hop)) // c.hop  # whole new hops
        out: list[Frame] = []
        if n <= 0:
            self._buffer = x
            return out
        frames = np.lib.stride_tricks.sliding_window_view(x, c.n_fft)[::c.hop][:n]  # (n, n_fft)
        self._buffer = x[n * c.hop:]
        mean_square = (frames ** 2).mean(axis=1)
        spectrum = np.abs(np.fft.rfft(frames * self.window, axis=1))  # (n, n_fft // 2 + 1)
        power = spectrum ** 2 * self.power_scale
        bands = [power[:, sel].sum(axis=1) for sel in self.band_bins]
        log_mag = np.log1p(c.compression * spectrum * self.amp_scale)
        for i in range(n):
            flux = 0.0
            if self._prev_log is not None:
                flux = float(np.maximum(log_mag[i] - self._prev_log, 0.0).mean())
            self._prev_log = log_mag[i]
            frame = Frame(((self._k + 1) * c.hop - c.n_fft / 4) / self.sr, self._db01(mean_square[i]),
                          *(self._db01(b[i]) for b in bands))
            done = self._finalise(flux)
            if done is not None:
                out.append(done)
            self._pending, self._pending_flux = frame, flux
            self._k += 1
        return out

    def _db01(self, mean_square: float) -> float:
        db = 10.0 * math.log10(mean_square + 1e-20) + 3.0103  # a full-scale sine is 0 dB
        return min(max((db - self.config.floor_db) / -self.config.floor_db, 0.0), 1.0)

    def _finalise(self, next_flux: float) -> Frame | None:
        """Decide the pending frame (k - 1) now that frame k's flux is known."""
        frame, flux = self._pending, self._pending_flux
        if frame is None:
            return None
        c, k = self.config, self._k - 1
        recent = self._recent[:self._recent_n] if self._recent_n < len(self._recent) else self._recent
        threshold = c.onset_delta + c.onset_mult * (float(np.median(recent)) if len(recent) else 0.0)
        frame.onset = (flux > threshold and flux > self._flux_before and flux >= next_flux
                       and (k - self._last_onset) * self.frame_seconds >= c.min_gap)
        if frame.onset:
            self._last_onset = k
        self._recent[k % len(self._recent)] = flux
        self._recent_n += 1
        self._flux_before = flux
        self._env[k % len(self._env)] = flux
        self._env_n += 1
        if (self._env_n * self.frame_seconds >= c.tempo_min_history
                and k % max(1, int(round(c.tempo_every / self.frame_seconds))) == 0):
            self._tempo = self._estimate_tempo() or self._tempo
        frame.tempo = self._tempo
        frame.beat = self._beat(k, frame.onset)
        return frame

    def _estimate_tempo(self) -> float | None:
        c = self.config
        n = min(self._env_n, len(self._env))
        start = self._env_n % len(self._env) if self._env_n > len(self._env) else 0
        env = np.roll(self._env, -start)[:n] if self._env_n > len(self._env) else self._env[:n]
        env = env - env.mean()
        if not env.any():
            return None
        fps = 1.0 / self.frame_seconds
        lo_lag, hi_lag = int(math.floor(60 * fps / c.bpm_range[1])), int(math.ceil(60 * fps / c.bpm_range[0]))
        if hi_lag + 2 >= n:
            return None
        lags = np.arange(max(1, lo_lag - 1), hi_lag + 2)
        ac = np.array([float(np.dot(env[:-lag], env[lag:])) / (n - lag) for lag in lags])
        bpm = 60 * fps / lags
        weight = np.exp(-0.5 * np.log2(bpm / c.bpm_prior) ** 2)
        inside = (lags >= lo_lag) & (lags <= hi_lag)
        score = np.where(inside, np.maximum(ac, 0) * weight, -np.inf)
        i = int(np.argmax(score))
        if not np.isfinite(score[i]) or ac[i] <= 0:
            return None
        lag = float(lags[i])
        if 0 < i < len(lags) - 1:  # parabolic interpolation on the raw autocorrelation
            a, b, d = ac[i - 1], ac[i], ac[i + 1]
            denom = a - 2 * b + d
            if denom < 0:
                lag += 0.5 * (a - d) / denom
        return 60 * fps / lag

    def _beat(self, k: int, onset: bool) -> bool:
        b = self._beats
        if not self._tempo:
            return False
        b.period = 60.0 / self._tempo / self.frame_seconds
        since = math.inf if b.last is None else k - b.last
        if onset and since >= 0.75 * b.period:  # heard, near where a beat was expected (or the first)
            b.last, b.predicted = float(k), False
            return True
        if onset and b.predicted and since < 0.25 * b.period:  # heard just after a predicted beat: re-anchor
            b.last, b.predicted = float(k), False
            return False
        if b.last is not None and since >= b.period - 0.5:
            b.last, b.predicted = b.last + b.period, True
            return True
        return False


# --- files ---

class _WavReader:
    """PCM WAV through the standard library's `wave`: 8, 16, 24 or 32 bit, mixed to mono."""

    def __init__(self, path: str):
        self._f = wave.open(path, "rb")
        self.sr, self.channels, self.width = self._f.getframerate(), self._f.getnchannels(), self._f.getsampwidth()

    def read(self, n: int) -> np.ndarray:
        data = self._f.readframes(n)
        w = self.width
        if w == 1:
            x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
        elif w == 3:
            b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            x = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8).astype(np.float32) / 2 ** 23
        else:
            dtype = {2: "<i2", 4: "<i4"}[w]
            x = np.frombuffer(data, dtype).astype(np.float32) / 2 ** (8 * w - 1)
        return x.reshape(-1, self.channels).mean(axis=1)

    def close(self) -> None:
        self._f.close()


class _AvReader:
    """Any format FFmpeg reads (PyAV), resampled to float mono at the stream's rate."""

    def __init__(self, path: str):
        import av

        self._c = av.open(path)
        stream = self._c.streams.audio[0]
        self.sr = stream.rate or 48000
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sr)
        self._frames = self._c.decode(stream)
        self._buffer = np.zeros(0, np.float32)

    def read(self, n: int) -> np.ndarray:
        while len(self._buffer) < n:
            frame = next(self._frames, None)
            chunks = self._resampler.resample(frame)  # None flushes
            for f in chunks:
                self._buffer = np.concatenate([self._buffer, f.to_ndarray().reshape(-1)])
            if frame is None:
                break
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def close(self) -> None:
        self._c.close()


def open_audio_file(path) -> _WavReader | _AvReader:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DeviceLost(f"{path}: no such file")
    try:
        return _WavReader(path)
    except (wave.Error, EOFError, KeyError):  # float or compressed WAV, or not a WAV at all
        return _AvReader(path)


def read_audio_file(path) -> tuple[np.ndarray, int]:
    """The whole file as (mono float32 samples, sample rate)."""
    reader = open_audio_file(path)
    try:
        chunks = []
        while len(chunk := reader.read(1 << 16)):
            chunks.append(chunk)
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), reader.sr
    finally:
        reader.close()


@dataclass
class AudioAnalysis:
    """A whole file analysed once: the features as a pure function of show time, for offline renders.

    `features_at(t, since)`: the continuous features of the last frame at or before `t`; the triggers are 1
    if an onset or beat fell in (since, t] (`since` defaults to one hop before `t`: pass the previous
    rendered frame's time so that no onset falls between two frames). Before the first frame: all 0.
    """
    times: np.ndarray  # (F,) seconds: each frame's time
    values: dict[str, np.ndarray] = field(default_factory=dict)  # "audio:level" -> (F,)
    frame_seconds: float = 0.0

    @classmethod
    def from_samples(cls, samples: np.ndarray, sample_rate: int, config: AnalyserConfig = AnalyserConfig()):
        analyser = Analyser(sample_rate, config)
        frames: list[Frame] = []
        block = 1 << 15
        for i in range(0, len(samples), block):
            frames += analyser.feed(samples[i:i + block])
        frames += analyser.feed(np.zeros(2 * config.hop))  # flush the pending frame
        frames = [f for f in frames if f.time <= len(samples) / sample_rate + 1e-9]
        names = list(Frame(0, 0, 0, 0, 0).features())
        values = {n: np.array([f.features()[n] for f in frames], np.float64) for n in names}
        return cls(np.array([f.time for f in frames], np.float64), values, analyser.frame_seconds)

    @classmethod
    def from_file(cls, path, config: AnalyserConfig = AnalyserConfig()):
        samples, sr = read_audio_file(path)
        return cls.from_samples(samples, sr, config)

    @property
    def duration(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0

    def event_times(self, name: str) -> np.ndarray:
        """The times of a trigger ("audio:onset", "audio:beat")."""
        return self.times[self.values[name] > 0]

    def features_at(self, t: float, since: float | None = None) -> dict[str, float]:
        since = t - self.frame_seconds if since is None else since
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        out = {n: (float(v[i]) if i >= 0 else 0.0) for n, v in self.values.items()}
        lo, hi = np.searchsorted(self.times, [since, t], side="right")
        for trigger in ("audio:onset", "audio:beat"):
            out[trigger] = 1.0 if self.values[trigger][lo:hi].any() else 0.0
        return out


# --- the live source ---

def _is_file(source) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return isinstance(source, str) and (os.path.exists(source) or
                                        os.path.splitext(source)[1].lower() in AUDIO_EXTENSIONS)


class AudioSource(Source):
    """Posts `audio:*` from a microphone (`source`: None for the default input, a device index or name) or a
    file (`source`: a path; played at wall-clock pace from `start()`, looping if `loop`). Never raises after
    `start()`. Level and bands ease to 0 when the input is lost; tempo holds; triggers post 1 when they fire.
    """

    kind = "audio"

    def __init__(self, bus, source=None, *, loop: bool = False, sample_rate: int | None = None,
                 config: AnalyserConfig = AnalyserConfig(), silence_timeout: float = 2.0, **source_options):
        super().__init__(bus, **source_options)
        self.source, self.loop, self.sample_rate, self.config = source, loop, sample_rate, config
        self.silence_timeout = silence_timeout
        self.is_file = _is_file(source)
        self.features: dict[str, float] = {}  # the last frame's, for a status page
        self.dropped = 0  # live blocks dropped because the analysis fell behind
        self._reader = None
        self._stream = None
        self._queue: queue.Queue = queue.Queue(maxsize=256)
        self._analyser: Analyser | None = None
        self._t0 = 0.0
        self._consumed = 0

    def _open(self) -> None:
        if self.is_file:
            self._reader = open_audio_file(self.source)
            sr = self._reader.sr
        else:
            if sounddevice is None:
                raise DeviceLost(SOUNDDEVICE_MISSING)
            self._queue = queue.Queue(maxsize=256)
            try:
                sr = int(self.sample_rate or sounddevice.query_devices(self.source, "input")["default_samplerate"])
                self._stream = sounddevice.InputStream(device=self.source, channels=1, samplerate=sr,
                                                       blocksize=self.config.hop, callback=self._callback)
                self._stream.start()
            except Exception as e:  # PortAudioError, ValueError: no such device
                raise DeviceLost(f"cannot open audio input {self.source!r}: {e}") from None
        self._analyser = Analyser(sr, self.config)
        self._t0, self._consumed = self.clock(), 0

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: only enqueue
        try:
            self._queue.put_nowait(indata[:, 0].copy())
        except queue.Full:
            self.dropped += 1

    def _step(self) -> bool:
        if self.is_file:
            due = int((self.clock() - self._t0) * self._analyser.sr) - self._consumed
            if due < self.config.hop:
                self._wait(self.config.hop / self._analyser.sr)
                return True
            samples = self._reader.read(due)
            if len(samples) == 0:
                if not self.loop:
                    self.reason = "end of file"
                    return False
                self._reader.close()
                self._reader = open_audio_file(self.source)
                samples = self._reader.read(due)
                if len(samples) == 0:
                    self.reason = "empty file"
                    return False
            self._consumed += due  # the clock runs on even where the file had fewer samples left
        else:
            try:
                samples = self._queue.get(timeout=self.silence_timeout)
            except queue.Empty:
                self.reason = f"no audio for {self.silence_timeout:g} s (unplugged?)"
                return False
            if self._stream is not None and not self._stream.active:
                self.reason = "the input stream stopped"
                return False
        self._count_read()
        frames = self._analyser.feed(samples)
        if frames:
            last = frames[-1]
            for name in CONTINUOUS:
                self.post(name, getattr(last, name))
            if last.tempo:
                self.post("tempo", last.tempo, continuous=False)
            if any(f.onset for f in frames):
                self.post("onset", 1.0, continuous=False)
            if any(f.beat for f in frames):
                self.post("beat", 1.0, continuous=False)
            self.features = last.features()
        return True

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None
