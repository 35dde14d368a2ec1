"""Look at a pickle before anything unpickles it: refuse deep nesting, references that expand or loop,
and sheer size, from the instruction stream alone.

A pickle is a program for a small stack machine, and a few hundred bytes of it can
- nest a tuple a million deep (`)` then TUPLE1 a million times): hashing or printing the result recurses
  in C and kills the process (SIGSEGV, no message), in Python's unpickler and torch's weights-only one alike;
- build a list of ten references to a list of ten references ... (memo GET): nine levels are 10**9
  elements to whatever walks the result (a repr, a config copy): a "billion laughs";
- append a list to itself: whatever walks it recurses forever.
The restricted unpicklers (`nvlabs_pickle`, `torch.load(weights_only=True)`) decide which objects a file
may make; this module bounds how many and how deep, before either runs. It reads the file with
`pickletools.genops`, which decodes one instruction and its argument at a time and builds nothing, and
replays each instruction on a stack of (depth, element count) pairs: bounded work, no recursion, no
allocation beyond one argument (never more than the file holds).

The rules: nesting at most MAX_DEPTH; at most MAX_ELEMENTS elements with every shared reference counted
each time it is used; at most MAX_INSTRUCTIONS instructions; and no container changed after a reference to
it was taken (the only way to make a cycle; Python's pickler writes that only for self-referential data,
which no model file holds).

Use: `check(data, source)` for bytes, `check_file(path)` for a pickle file, `check_torch_file(path)` for a
`torch.save` file (the data.pkl of a zip archive, or the pickles that open a legacy file) and
`check_torch_legacy(stream, source)` for legacy bytes inside another pickle. Each raises
`HostilePickleError` (hostile structure) or `DamagedPickleError` (not a pickle, or cut short), both
`CheckpointError`s whose one-line message names the source.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from pathlib import Path

from engine.generators.checkpoint import CheckpointError

MAX_DEPTH = 200  # containers inside containers; NVlabs StyleGAN2/3 pickles reach about 30
MAX_ELEMENTS = 2_000_000  # with shared references expanded; a 1024 px StyleGAN2 generator holds about 22,000
MAX_INSTRUCTIONS = 5_000_000  # bounds the time a scan takes (a few seconds)
MAX_DATA_PKL = 256 << 20  # bytes of a torch zip's data.pkl (the tensors are stored beside it)
QUOTE = 120  # characters of file content a message may quote


class HostilePickleError(CheckpointError):
    """A pickle whose structure would crash or exhaust the reader: too deep, too big, shared or cyclic."""


class DamagedPickleError(CheckpointError):
    """Not a pickle at all, or one cut short."""


def quote(text, limit: int = QUOTE) -> str:
    """`repr`-free, one-line, at most `limit` characters: for quoting a file's content in a message."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check(data: bytes, source: str, what: str = "pickle") -> None:
    """Refuse the pickle in `data` (the first one, up to its STOP) if it is hostile or damaged."""
    _scan(_Bounded(io.BytesIO(data), len(data)), str(source), what)


def check_file(path: str | Path, what: str = "pickle") -> None:
    """Refuse the pickle file at `path` if it is hostile or damaged."""
    path = Path(path)
    with open(path, "rb") as f:
        _scan(_Bounded(f, os.fstat(f.fileno()).st_size), str(path), what)


def check_torch_legacy(stream, source: str, size: int | None = None) -> None:
    """The five pickles that open a legacy `torch.save` stream: magic number, protocol, system information,
    the object, the storage keys (raw storage bytes follow them and are not pickles)."""
    if size is None:
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)
    bounded = _Bounded(stream, size)
    for i in range(5):
        start = stream.tell()
        _scan(bounded, source, "torch checkpoint")
        if i == 3:  # the object: its storages are allocated at their declared size before their bytes are read
            end = stream.tell()
            stream.seek(start)
            _check_declared_storages(_Bounded(stream, end - start), source, size)
            stream.seek(end)


def _check_declared_storages(stream, source: str, size: int) -> None:
    """Each storage a legacy file declares (a persistent id `('storage', type, key, device, numel)`) is
    allocated at `numel` elements before its bytes are read; the bytes lie in the same file, at one byte or
    more an element, so a declared `numel` beyond the file's size is a lie told to make the loader allocate."""
    declared = 0
    ints: list[int] = []
    for opcode, arg in _instructions(stream, source, "torch checkpoint"):
        if opcode.name == "MARK":
            ints = []
        elif isinstance(arg, int) and not isinstance(arg, bool):
            ints.append(arg)
        elif opcode.name in ("BINPERSID", "PERSID") and ints:
            declared += max(ints)
            if declared > size:
                raise HostilePickleError(f"{source}: declares storages of {declared:,} elements, but the file "
                                         f"holds {size:,} bytes: refused before anything is allocated")


def check_torch_file(path: str | Path) -> None:
    """A `torch.save` file: every pickle in a zip archive (`<name>/data.pkl`), or a legacy file's pickles."""
    path = Path(path)
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if not zipped:
        with open(path, "rb") as f:
            check_torch_legacy(f, str(path), os.fstat(f.fileno()).st_size)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".pkl"):
                    continue
                if info.file_size > MAX_DATA_PKL:
                    raise HostilePickleError(f"{path}: {quote(info.filename)} is {info.file_size:,} bytes; a "
                                             f"checkpoint's pickle is at most {MAX_DATA_PKL:,} (tensors lie beside it)")
                with archive.open(info) as member:
                    _scan(_Bounded(member, info.file_size), f"{path} ({quote(info.filename, 60)})", "torch checkpoint")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise DamagedPickleError(f"{path}: not a readable torch checkpoint, truncated or damaged "
                                 f"({type(e).__name__}: {quote(e)})") from None


class _Bounded:
    """A stream whose reads never ask for more than is left: a declared length of 2**62 bytes reads what
    the file holds (and fails as short), instead of allocating it first."""

    def __init__(self, stream, size: int):
        self.stream, self.end = stream, stream.tell() + size

    def read(self, n: int = -1) -> bytes:
        left = max(self.end - self.stream.tell(), 0)
        return self.stream.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.stream.readline(max(self.end - self.stream.tell(), 0))

    def tell(self) -> int:
        return self.stream.tell()


class _Node:
    """What the scan knows of one object: how deep it nests, how many elements it expands to, and whether
    a reference to it was taken (after which it must not change)."""

    __slots__ = ("depth", "size", "shared")

    def __init__(self, depth: int = 0, size: int = 1):
        self.depth, self.size, self.shared = depth, size, False


_MARK = object()
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_CHANGES = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # change the object below them
_MARKED = {op.name for op in pickletools.opcodes if any(s.name == "mark" for s in op.stack_before)}
_BELOW = {op.name: [s.name for s in op.stack_before].index("mark") if op.name in _MARKED else len(op.stack_before)
          for op in pickletools.opcodes}  # items taken off the stack besides a marked slice
_PUSHES = {op.name: len(op.stack_after) for op in pickletools.opcodes}


def _instructions(stream, source: str, what: str):
    """(opcode, argument) pairs, up to and including STOP; a stream that is no pickle is DamagedPickleError."""
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            yield opcode, arg
    except ValueError as e:  # an unknown instruction, or an argument cut short
        raise DamagedPickleError(f"{source}: not a readable {what}, truncated or damaged ({quote(e)})") from None


def _scan(stream, source: str, what: str) -> None:
    stack: list = []  # _Node or _MARK
    memo: dict = {}
    count = 0

    def refuse(message: str):
        raise HostilePickleError(f"{source}: refused: {message}")

    def grow(node: _Node, child: _Node) -> None:
        node.depth = max(node.depth, child.depth + 1)
        node.size += child.size
        if node.depth > MAX_DEPTH:
            refuse(f"structures nested more than {MAX_DEPTH} deep (reading it could crash the reader)")
        if node.size > MAX_ELEMENTS:
            refuse(f"more than {MAX_ELEMENTS:,} elements once its shared references are expanded (a file "
                   "that repeats references to make a structure explode when read)")

    def pop_to_mark() -> list:
        items = []
        while stack:
            item = stack.pop()
            if item is _MARK:
                return items
            items.append(item)
        raise DamagedPickleError(f"{source}: not a readable {what}: an instruction finds no MARK")

    def pop() -> _Node:
        if not stack or stack[-1] is _MARK:
            raise DamagedPickleError(f"{source}: not a readable {what}: an instruction finds an empty stack")
        return stack.pop()

    for opcode, arg in _instructions(stream, source, what):
        count += 1
        if count > MAX_INSTRUCTIONS:
            refuse(f"more than {MAX_INSTRUCTIONS:,} pickle instructions")
        name = opcode.name
        if name in _GETS or name == "DUP":
            if name == "DUP":
                node = pop()
                stack.append(node)
            elif arg not in memo:
                raise DamagedPickleError(f"{source}: not a readable {what}: memo entry {quote(arg, 20)} "
                                         "used before it was stored")
            else:
                node = memo[arg]
            node.shared = True
            stack.append(node)
        elif name in _PUTS or name == "MEMOIZE":
            if not stack or stack[-1] is _MARK:
                raise DamagedPickleError(f"{source}: not a readable {what}: nothing to store in the memo")
            memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
        elif name == "MARK":
            stack.append(_MARK)
        elif name in _CHANGES:
            added = pop_to_mark() if name in _MARKED else [pop() for _ in range(_BELOW[name] - 1)]
            target = pop()
            if target.shared:
                refuse("a container is changed after a reference to it was taken (a structure that "
                       "contains itself, or one built to change under a shared reference)")
            for child in added:
                grow(target, child)
            stack.append(target)
        elif name == "STOP":
            pop()
            return
        else:  # make one object (or none) from what it takes off the stack
            taken = pop_to_mark() if name in _MARKED else []
            taken += [pop() for _ in range(_BELOW[name])]
            if _PUSHES[name]:
                node = _Node(1 if name.startswith("EMPTY_") else 0)
                for child in taken:
                    grow(node, child)
                stack.append(node)
    raise DamagedPickleError(f"{source}: not a readable {what}, truncated (no STOP instruction)")


