"""Backends by short name: a table of lazy dotted paths, so a heavy backend is imported only when a
show or a checkpoint asks for it, and a new backend is one file plus one line."""

from __future__ import annotations

import fnmatch
import importlib


class Registry:
    def __init__(self, kind: str, table: dict[str, str]):
        self.kind, self.table = kind, table

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self.table if fnmatch.fnmatch(n, pattern))

    def get(self, name: str):
        if name not in self.table:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        module_path, attr = self.table[name].split(":")
        return getattr(importlib.import_module(module_path), attr)

    def create(self, name: str, **config):
        return self.get(name)(**config)
