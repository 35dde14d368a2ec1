"""Beat-locked keyframes: the latent jumps to the next seeded keyframe on the beat, for music videos.

Keyframe n is reached from the beat at `downbeat + n * beats_per_keyframe * 60 / bpm`: the move starts
exactly on that beat and lands `transition` seconds later, along a slerp (White 2016,
arXiv:1609.04468) eased out (1 - (1 - u)^3, fastest on the beat itself, so the cut reads as a hit);
`transition = 0` is a hard cut. Between moves the image holds. The `keyframes` latents cycle, so a
loop of 8 keyframes x 4 beats repeats with an 8-bar phrase. Times before the downbeat count
backwards, so every t has a keyframe.

Shapes: `step(tick) -> z [1, z_dim]`, float32, on the CPU; a pure function of `tick.t`.
"""

from __future__ import annotations

import math

import torch

from engine.frame import Tick
from engine.walks import _check
from engine.walks.keyframes import slerp

NAME = "beats"


class BeatKeyframes:
    def __init__(self, z_dim: int, seed: int = 0, bpm: float = 120.0, beats_per_keyframe: int = 4,
                 downbeat: float = 0.0, transition: float = 0.1, keyframes: int = 8):
        """bpm: the music's tempo; beats_per_keyframe: beats between cuts (4 = once a bar in 4/4);
        downbeat: show time (s) of any beat where a cut falls; transition: seconds from the beat to the
        new keyframe (0 cuts hard; less than the time between cuts); keyframes: how many seeded latents
        cycle."""
        self.z_dim = _check.integer(NAME, "z_dim", z_dim, minimum=1)
        _check.integer(NAME, "seed", seed)
        self.bpm = _check.number(NAME, "bpm", bpm, above=0, maximum=1000)
        self.beats_per_keyframe = _check.integer(NAME, "beats_per_keyframe", beats_per_keyframe, minimum=1)
        self.downbeat = _check.number(NAME, "downbeat", downbeat)
        self.interval = self.beats_per_keyframe * 60.0 / self.bpm  # seconds between cuts
        self.transition = _check.number(NAME, "transition", transition, minimum=0, below=self.interval)
        n = _check.integer(NAME, "keyframes", keyframes, minimum=2)
        self.config = dict(z_dim=z_dim, seed=seed, bpm=bpm, beats_per_keyframe=beats_per_keyframe,
                           downbeat=downbeat, transition=transition, keyframes=keyframes)
        self.keys = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))  # [K, z_dim]

    clock = "show"  # locked to the music: fed show time, not walk time (walk.speed does not stretch a beat)

    def follow(self, bpm: float, downbeat: float) -> None:
        """Take a new tempo (tap tempo, a BPM fader): cuts fall on the new grid from now on."""
        if (bpm, downbeat) == (self.bpm, self.downbeat):
            return
        self.bpm, self.downbeat = bpm, downbeat
        self.interval = self.beats_per_keyframe * 60.0 / bpm
        self.transition = min(self.config["transition"], 0.5 * self.interval)

    def cut_time(self, n: int) -> float:
        """Show time of the beat where the move to keyframe number n (counting from the downbeat) starts."""
        return self.downbeat + n * self.interval

    def position(self, t: float) -> tuple[int, float]:
        """Show time -> (number of the keyframe being moved to or held, counted from the downbeat;
        eased fraction of the move into it, 1 once it has landed)."""
        n = math.floor((t - self.downbeat) / self.interval)
        since = t - self.cut_time(n)
        if since < 0:  # floor rounded across a beat: step back
            n, since = n - 1, since + self.interval
        elif since >= self.interval:
            n, since = n + 1, since - self.interval
        if since >= self.transition:
            return n, 1.0
        u = since / self.transition
        return n, 1 - (1 - u) ** 3

    def step(self, tick: Tick) -> torch.Tensor:
        n, u = self.position(tick.t)
        k = len(self.keys)
        if u >= 1.0:
            return self.keys[n % k][None].clone()  # [1, z_dim]
        return slerp(self.keys[(n - 1) % k], self.keys[n % k], u)[None]  # [1, z_dim]
