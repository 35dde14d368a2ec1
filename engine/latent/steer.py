"""The latent stage between the walk and the style: bookmarks a performer saves and recalls, and
discovered directions as live params. The walk says where the picture is going; this says where the
performer wants it instead.

- `bookmark.save N` keeps the latent on screen in slot N (named `slotN` in the show's bookmarks file,
  written at once, so a set's favourite points outlive the set).
- `bookmark.recall N` glides from the walk to slot N over `glide` seconds of show time (slerp, so the
  latent keeps the norm the model was trained on), holds it for `hold` seconds, and glides back to the
  walk, which has gone on meanwhile. A recall of an empty slot is counted and ignored.
- `direction.i` moves the latent `amount * sigma_i` along GANSpace direction i (engine/latent/directions.py):
  in z for DCGAN-family models, in w (every layer) for StyleGAN models, where the edit is applied by
  the styler.

Everything here is a function of show time and the snapshot, so a replayed set recalls the same
bookmark on the same frame.
"""

from __future__ import annotations

import logging

import torch

from engine.latent.bookmarks import BookmarkError, Bookmarks
from engine.show import LatentSection
from engine.walks.keyframes import slerp

log = logging.getLogger(__name__)


def _ease(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


class Steer:
    def __init__(self, latent: LatentSection, generator, model_path, bookmarks_path=None):
        self.latent = latent
        z_dim, w_dim = generator.z_dim, getattr(generator, "w_dim", None) if hasattr(generator, "mapping") else None
        if bookmarks_path is not None:
            self.marks = Bookmarks.open(bookmarks_path, model_path, z_dim, w_dim)
        else:
            from engine.latent import file_sha256

            self.marks = Bookmarks("<memory>", file_sha256(model_path), z_dim, w_dim)
        self.persist = bookmarks_path is not None
        self.found = None
        if latent.directions:
            from engine.latent import directions

            self.found = directions.load_or_compute(generator, model_path, components=latent.directions)
        self._recall: tuple[torch.Tensor, float] | None = None  # (target z [z_dim], show time it began)
        self.ignored = 0  # recalls of empty slots

    # --- events ------------------------------------------------------------------------------------

    def save(self, slot: int, z: torch.Tensor) -> None:
        """Slot N <- z [1, z_dim] (the latent on screen, after any glide)."""
        self.marks.add(f"slot{slot}", z.detach().cpu()[0])
        if self.persist:
            try:
                self.marks.save()
            except OSError as e:  # a full disk must not stop the show; the slot is still in memory
                log.warning("bookmark slot %d kept in memory only: %s", slot, e)

    def recall(self, slot: int | str, t: float) -> bool:
        """Glide to slot N, or to latent arithmetic on named bookmarks ("smile - frown + calm")."""
        try:
            target = self.marks[f"slot{slot}"].z if isinstance(slot, int) else self.marks.combine(slot).z
        except BookmarkError as e:
            self.ignored += 1
            log.info("recall ignored: %s", e)
            return False
        self._recall = (target, t)
        return True

    def check(self, expression: str, where: str) -> None:
        """Refuse at load time an expression that names bookmarks the file does not have."""
        try:
            self.marks.combine(expression)
        except BookmarkError as e:
            raise BookmarkError(f"{where}: latent: {e}") from None

    # --- every frame --------------------------------------------------------------------------------

    def weight(self, t: float) -> float:
        """How far the latent sits toward the recalled bookmark at show time t (0: the walk)."""
        if self._recall is None:
            return 0.0
        elapsed, glide = t - self._recall[1], self.latent.glide
        if elapsed < glide:
            return _ease(elapsed / glide)
        if elapsed < glide + self.latent.hold:
            return 1.0
        return 1.0 - _ease((elapsed - glide - self.latent.hold) / glide)

    def __call__(self, z: torch.Tensor, t: float, snap) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z [1, z_dim] from the walk -> (z [1, z_dim], w offset [1, w_dim] or None) for the styler."""
        u = self.weight(t)
        if u > 0:
            z = slerp(z[0], self._recall[0].to(z), u)[None]
        elif self._recall is not None and t - self._recall[1] > 2 * self.latent.glide + self.latent.hold:
            self._recall = None
        if self.found is None:
            return z, None
        from engine.latent import directions

        amounts = [snap[f"direction.{i}"] for i in range(1, self.found.components + 1)]
        if not any(amounts):
            return z, None
        shift = directions.offset(self.found, amounts).to(z)[None]  # [1, dim]
        if self.found.space == "z":
            return z + shift, None
        return z, shift
