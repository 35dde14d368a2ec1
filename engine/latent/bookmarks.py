"""Bookmarked latents and latent arithmetic on them (Radford et al. 2016, DCGAN, arXiv:1511.06434 §6.3:
"smiling woman - neutral woman + neutral man" on averaged face vectors; in StyleGAN's w space the same
arithmetic works better, Karras et al. 2019).

File: JSON, written atomically (temporary file, then rename), tied to one model by its sha256:
    {"format": "masquerade-bookmarks/1", "model_sha256": "...", "model": "emoji64.safetensors",
     "z_dim": 100, "w_dim": null,
     "bookmarks": {"smile": {"z": [...], "w": [...] or absent}, ...}}
Names are identifiers (letters, digits, `_`), so they can be used in expressions: `combine("0.5*A - B + C")`
is read by a small parser (names, numbers, `+`, `-`, `*`) and never evaluated as Python.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import MasqueradeError
from engine.latent import file_sha256

FORMAT = "masquerade-bookmarks/1"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class BookmarkError(MasqueradeError, ValueError):
    """A bookmark file, name or expression that cannot be used; the message says which and where."""


@dataclass(frozen=True)
class Bookmark:
    z: torch.Tensor  # [z_dim] float32
    w: torch.Tensor | None = None  # [w_dim] float32, StyleGAN models only


class Bookmarks:
    """Named latents for one model. `open(path, model_path)` is the usual way in; `save()` writes back."""

    def __init__(self, path: str | Path, model_sha256: str, z_dim: int, w_dim: int | None = None, model: str = ""):
        self.path, self.model_sha256, self.model = Path(path), model_sha256, model
        self.z_dim, self.w_dim = z_dim, w_dim
        self.marks: dict[str, Bookmark] = {}

    # -- files ---------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, model_path: str | Path, z_dim: int, w_dim: int | None = None) -> Bookmarks:
        """The bookmarks in `path` for the model file `model_path` (empty when `path` does not exist yet)."""
        sha = file_sha256(model_path)
        if not Path(path).exists():
            return cls(path, sha, z_dim, w_dim, Path(model_path).name)
        marks = cls.load(path, sha, model=str(model_path))
        if (marks.z_dim, marks.w_dim) != (z_dim, w_dim):
            raise BookmarkError(f"{path}: bookmarks have z_dim {marks.z_dim}, w_dim {marks.w_dim}; the model "
                                f"{model_path} has z_dim {z_dim}, w_dim {w_dim}")
        return marks

    @classmethod
    def load(cls, path: str | Path, model_sha256: str, model: str = "") -> Bookmarks:
        """Read `path`; refuse it unless it was saved for the model with this sha256 (`model` names it)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BookmarkError(f"{path}: not a readable bookmarks file ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BookmarkError(f"{path}: not a Masquerade bookmarks file (expected \"format\": \"{FORMAT}\")")
        if data.get("model_sha256") != model_sha256:
            raise BookmarkError(f"{path}: these bookmarks belong to another model ({data.get('model') or '?'}, "
                                f"sha256 {str(data.get('model_sha256'))[:12]}…), not {model or 'this model'} "
                                f"(sha256 {model_sha256[:12]}…); latents mean nothing across models")
        z_dim, w_dim, entries = data.get("z_dim"), data.get("w_dim"), data.get("bookmarks")
        if not isinstance(z_dim, int) or not (w_dim is None or isinstance(w_dim, int)) or not isinstance(entries,
                                                                                                      dict):
            raise BookmarkError(f"{path}: z_dim (integer), w_dim (integer or null) and bookmarks (object) expected")
        marks = cls(path, model_sha256, z_dim, w_dim, data.get("model", model))
        for name, entry in entries.items():
            where = f"{path}: bookmark {name!r}"
            if not isinstance(entry, dict):
                raise BookmarkError(f"{where}: expected {{\"z\": [...]}}, got {type(entry).__name__}")
            z = _vector(entry.get("z"), z_dim, f"{where}: z")
            w = None if entry.get("w") is None else _vector(entry["w"], w_dim, f"{where}: w")
            try:
                marks.add(name, z, w)
            except BookmarkError as e:
                raise BookmarkError(f"{path}: {e}") from None
        return marks

    def save(self) -> None:
        data = {"format": FORMAT, "model_sha256": self.model_sha256, "model": self.model,
                "z_dim": self.z_dim, "w_dim": self.w_dim,
                "bookmarks": {name: {"z": m.z.tolist(), **({"w": m.w.tolist()} if m.w is not None else {})}
                              for name, m in self.marks.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- the bookmarks -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.marks)

    def __contains__(self, name: str) -> bool:
        return name in self.marks

    def __getitem__(self, name: str) -> Bookmark:
        if name not in self.marks:
            raise BookmarkError(f"{self.path}: no bookmark {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self.marks[name]

    def add(self, name: str, z: torch.Tensor, w: torch.Tensor | None = None) -> Bookmark:
        """Bookmark z [z_dim] or [1, z_dim] (and w [w_dim] / [1, w_dim] for StyleGAN) as `name`."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise BookmarkError(f"bookmark name {name!r}: use letters, digits and _ (not first a digit), so it "
                                "can appear in expressions")
        z = _tensor(z, self.z_dim, f"bookmark {name!r}: z")
        if w is not None:
            if self.w_dim is None:
                raise BookmarkError(f"bookmark {name!r}: this model has no w space")
            w = _tensor(w, self.w_dim, f"bookmark {name!r}: w")
        self.marks[name] = Bookmark(z, w)
        return self.marks[name]

    def remove(self, name: str) -> None:
        self[name]  # noqa: B018 -- raises, naming the bookmark, when it is missing
        del self.marks[name]

    # -- arithmetic ----------------------------------------------------------------------------------
    def mean(self, names: list[str]) -> Bookmark:
        if not names:
            raise BookmarkError("mean of no bookmarks")
        return self.weighted([(1.0 / len(names), n) for n in names])

    def combine(self, expression: str) -> Bookmark:
        """`"A - B + C"`, `"0.5*A + 0.5*B"`, `"-A"`: a weighted sum of bookmarks, z and (when every term
        has one) w alike. Errors name the expression and the position."""
        return self.weighted(parse(expression, known=self.marks))

    def weighted(self, terms: list[tuple[float, str]]) -> Bookmark:
        marks = [(weight, self[name]) for weight, name in terms]
        z = sum((weight * m.z.double() for weight, m in marks), torch.zeros(self.z_dim, dtype=torch.float64))
        w = None
        if self.w_dim is not None and all(m.w is not None for _, m in marks):
            w = sum((weight * m.w.double() for weight, m in marks), torch.zeros(self.w_dim, dtype=torch.float64))
            w = w.float()
        return Bookmark(z.float(), w)


def parse(expression: str, known=None) -> list[tuple[float, str]]:
    """`"0.5*A - B + 2*C"` -> [(0.5, "A"), (-1.0, "B"), (2.0, "C")]. Grammar:
    expression := [sign] term (sign term)*;  term := [number "*"] name | name "*" number;  sign := "+" | "-".
    Names not in `known` (when given) are errors too."""
    tokens = _tokens(expression)
    terms: list[tuple[float, str]] = []
    i = 0

    def fail(pos: int, what: str):
        raise BookmarkError(f"bookmark expression {expression!r}: {what} at position {pos}\n"
                            f"  {expression}\n  {' ' * pos}^")

    def expect(kind: str, what: str):
        nonlocal i
        if i >= len(tokens):
            fail(len(expression), f"expected {what}, found the end")
        tok = tokens[i]
        if tok[0] != kind:
            fail(tok[2], f"expected {what}, found {tok[1]!r}")
        i += 1
        return tok

    if not tokens:
        fail(0, "expected a bookmark name, found nothing")
    while True:
        sign = 1.0
        if i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in "+-":
            sign = -1.0 if tokens[i][1] == "-" else 1.0
            i += 1
        elif terms:
            fail(tokens[i][2], f"expected + or -, found {tokens[i][1]!r}")
        weight = 1.0
        if i < len(tokens) and tokens[i][0] == "number":
            weight = float(tokens[i][1])
            i += 1
            expect("star", "*")
        _, name, pos = expect("name", "a bookmark name")
        if i < len(tokens) and tokens[i][0] == "star":
            i += 1
            weight *= float(expect("number", "a number")[1])
        if known is not None and name not in known:
            fail(pos, f"unknown bookmark {name!r} (known: {', '.join(sorted(known)) or 'none'})")
        terms.append((sign * weight, name))
        if i >= len(tokens):
            return terms


def _tokens(expression: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) for names, numbers, + - and *; anything else is an error at its position."""
    out, pos = [], 0
    while pos < len(expression):
        ch = expression[pos]
        if ch.isspace():
            pos += 1
            continue
        if m := NAME.match(expression, pos):
            out.append(("name", m.group(), pos))
        elif m := NUMBER.match(expression, pos):
            out.append(("number", m.group(), pos))
        elif ch in "+-":
            out.append(("op", ch, pos))
            pos += 1
            continue
        elif ch == "*":
            out.append(("star", ch, pos))
            pos += 1
            continue
        else:
            raise BookmarkError(f"bookmark expression {expression!r}: unexpected character {ch!r} at position {pos}"
                                f" (only names, numbers, +, - and * are allowed)\n  {expression}\n  {' ' * pos}^")
        pos = m.end()
    return out


def _vector(value, dim, where: str) -> torch.Tensor:
    ok = (isinstance(value, list) and len(value) == dim
          and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value))
    if not ok:
        raise BookmarkError(f"{where}: expected a list of {dim} finite numbers")
    return torch.tensor(value, dtype=torch.float32)


def _tensor(value: torch.Tensor, dim: int, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise BookmarkError(f"{where}: expected a tensor, got {type(value).__name__}")
    v = value.detach().float().cpu().reshape(-1) if value.ndim == 2 and value.shape[0] == 1 else value
    if v.ndim != 1 or v.shape[0] != dim:
        raise BookmarkError(f"{where}: expected shape [{dim}] or [1, {dim}], got {list(value.shape)}")
    if not torch.isfinite(v).all():
        raise BookmarkError(f"{where}: not finite")
    return v.detach().float().cpu().clone()
