"""Style controls between the walk and the generator: truncation, class label, style mixing, noise.

A walk hands over z; how z becomes a picture depends on what the model has. StyleGAN2/3 map z to
per-layer styles w (Karras et al. 2019, arXiv:1812.04948 §3): truncation pulls w toward `w_avg`,
mixing takes a range of layers' styles from a second, fixed latent (coarse layers: pose and shape;
middle: features; fine: colour and texture), a class label conditions the mapping. DCGAN-family models
have only z, so only truncation applies; asking them for more is an error at load time, naming the key.

StyleGAN3 alone samples its picture from a continuous signal (Karras et al. 2021, arXiv:2106.12423 §3.1),
so it alone can slide and turn it: `style.translate_x`, `style.translate_y` (image widths) and
`style.rotate` (degrees, counter-clockwise) become the synthesis input's transform, as NVlabs'
gen_images.py `--translate --rotate` set it (`stylegan3.transform_matrix`). Other models refuse them at
load time when the show sets them (`[style]`, a `[[bind]]` row, a cue); the default `/masq/style/...`
faders every show has are no-ops there, so one controller layout serves every show.
"""

from __future__ import annotations

import torch

from engine.show import ShowError, StyleSection

LAYER_GROUPS = ("coarse", "middle", "fine")
MOVES = {"style.translate_x": "/masq/style/translate_x", "style.translate_y": "/masq/style/translate_y",
         "style.rotate": "/masq/style/rotate"}  # StyleGAN3's params, and the default fader of each


class Styler:
    def __init__(self, generator, style: StyleSection, where: str, bindings=(), classes=None):
        """`bindings`: the show's (engine.controls.bus.Binding rows), checked for params the model lacks;
        `classes`: the walk's keyframe classes, if it has any (they then stand for style.class_label)."""
        self.g, self.style = generator, style
        has_w = hasattr(generator, "mapping") and hasattr(generator, "render")
        c_dim = getattr(generator, "c_dim", 0)
        kind = type(generator).__module__.rsplit(".", 1)[-1]
        noisy = [m for m in generator.modules() if hasattr(m, "noise_gain")]
        if style.noise_strength != 1.0 and not noisy:
            raise ShowError(f"{where}: style.noise_strength: this model ({kind}) has no noise inputs")
        for m in noisy:
            m.noise_gain = style.noise_strength
        if not has_w:
            for key, off in (("class_label", -1), ("mix_seed", -1), ("truncation_cutoff", 0)):
                if getattr(style, key) != off and not (key == "class_label" and c_dim):  # BigGAN: z, c, psi
                    raise ShowError(f"{where}: style.{key}: this model ({kind}) has no style layers; "
                                    "it takes z and truncation only")
        base = getattr(getattr(getattr(generator, "synthesis", None), "input", None), "transform", None)
        self.base_transform = base if isinstance(base, torch.Tensor) and base.shape == (3, 3) else None
        self._transform: tuple | None = None  # (translate, rotate, device) -> [3, 3], the last one made
        if self.base_transform is None:
            for key in ("translate_x", "translate_y", "rotate"):
                if getattr(style, key) != 0:
                    raise ShowError(f"{where}: style.{key}: this model ({kind}) cannot move its picture; "
                                    "translate and rotate are StyleGAN3's")
            for b in bindings:
                if b.target in MOVES and b.source != f"osc:{MOVES[b.target]}":
                    raise ShowError(f"{b.where}: {b.target}: this model ({kind}) cannot move its picture; "
                                    "translate and rotate are StyleGAN3's")
        for k in classes or ():  # a class walk's keyframe classes ([walk] classes = [...])
            if not c_dim:
                raise ShowError(f"{where}: walk.classes: this model ({kind}) is not conditional")
            if not 0 <= k < c_dim:
                raise ShowError(f"{where}: walk.classes: class {k} is not 0..{c_dim - 1}")
        if c_dim and style.class_label < 0 and not classes:
            raise ShowError(f"{where}: style.class_label: the model is conditional on {c_dim} classes; "
                            f"set class_label = 0..{c_dim - 1}")
        if style.class_label >= 0 and not c_dim and has_w:
            raise ShowError(f"{where}: style.class_label: the model is not conditional")
        if c_dim and style.class_label >= c_dim:
            raise ShowError(f"{where}: style.class_label must be 0..{c_dim - 1}, got {style.class_label}")
        self.c = None
        if c_dim:
            self.c = torch.zeros(1, c_dim)
            self.c[0, max(style.class_label, 0)] = 1
        self.mix, self._mix_ws = None, None
        if style.mix_seed >= 0:
            z2 = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(style.mix_seed))
            self.mix = z2  # mapped on the device at the first frame
            n = generator.num_ws
            group = LAYER_GROUPS.index(style.mix_layers)
            self.mix_range = (group * n // 3, (group + 1) * n // 3 if group < 2 else n)

    def to(self, device) -> Styler:
        if self.c is not None:
            self.c = self.c.to(device)
        if self.mix is not None:
            self.mix = self.mix.to(device)
        return self

    def condition(self, label: float | list[tuple[int, float]]) -> torch.Tensor | None:
        """The class vector [1, c_dim] for a live `style.class` value: a whole number is that class; a
        fraction lies between two classes' one-hots, so a fader sweeps from one class to the next. A list of
        (class, weight) pairs (a class walk between two keyframes) mixes those classes' one-hots."""
        if self.c is None:
            return None
        if isinstance(label, list | tuple):
            c = torch.zeros_like(self.c)
            for k, weight in label:
                c[0, k] += weight
            return c
        top = self.c.shape[1] - 1
        label = min(max(label, 0.0), float(top))
        lo = int(label)
        c = torch.zeros_like(self.c)
        c[0, lo] = 1 - (label - lo)
        if lo < top:
            c[0, lo + 1] = label - lo
        return c

    def transform(self, translate: tuple[float, float], rotate: float) -> torch.Tensor | None:
        """The synthesis input's transform [3, 3] for a StyleGAN3 picture slid by `translate` (x right, y
        down, image widths) and turned `rotate` degrees counter-clockwise, after the model's own buffer;
        None when nothing moves (the buffer as it is) or the model cannot move."""
        from engine.generators.stylegan3 import transform_matrix

        if self.base_transform is None or (translate[0] == translate[1] == rotate == 0):
            return None
        key = (float(translate[0]), float(translate[1]), float(rotate), self.base_transform.device)
        if self._transform is None or self._transform[0] != key:
            m = self.base_transform.float() @ transform_matrix(key[:2], key[2]).to(self.base_transform.device)
            self._transform = (key, m)
        return self._transform[1]

    def __call__(self, z: torch.Tensor, psi: float, label: float | None = None, mix: float = 1.0,
                 w_shift: torch.Tensor | None = None, translate: tuple[float, float] = (0.0, 0.0),
                 rotate: float = 0.0) -> torch.Tensor:
        """z [B, z_dim], truncation psi -> image [B, 3, R, R] in [0, 1] (B frames of one set of controls; an
        offline render's batch).

        Live, for StyleGAN models: `label` (style.class), `mix` (style.mix: 0 keeps the walk's own styles in
        the mixed layers, 1 takes the second latent's), `w_shift` [1, w_dim] added to every layer's w
        (a discovered direction); for StyleGAN3, `translate` and `rotate` (style.translate_x/_y, style.rotate;
        ignored by other models)."""
        if not hasattr(self.g, "mapping"):
            if self.c is not None:  # conditional without a mapping network (BigGAN): the class goes in beside z
                c = self.c if label is None else self.condition(label)
                return self.g(z, c=c.expand(z.shape[0], -1), truncation_psi=psi)
            return self.g(z, truncation_psi=psi)
        cutoff = self.style.truncation_cutoff or None
        c = self.c if label is None else self.condition(label)
        ws = self.g.mapping(z, None if c is None else c.expand(z.shape[0], -1), truncation_psi=psi,
                            truncation_cutoff=cutoff)  # [B, num_ws, w_dim]
        if self.mix is not None and mix > 0:
            lo, hi = self.mix_range
            key = (psi, None if c is None else tuple(c[0].tolist()))
            if self._mix_ws is None or self._mix_ws[0] != key:  # the second latent is fixed: map it once per psi/c
                self._mix_ws = (key, self.g.mapping(self.mix, c, truncation_psi=psi, truncation_cutoff=cutoff))
            ws2 = self._mix_ws[1]
            ws = torch.cat([ws[:, :lo], torch.lerp(ws[:, lo:hi], ws2[:, lo:hi], mix), ws[:, hi:]], dim=1)
        if w_shift is not None:
            ws = ws + w_shift[:, None, :]
        if self.base_transform is not None:
            return self.g.render(ws, noise_mode=self.style.noise_mode, transform=self.transform(translate, rotate))
        return self.g.render(ws, noise_mode=self.style.noise_mode)
