"""Finding the dialogues of a synthesis run: JSONL files, folders of them, globs, one dialogue a line.

Every non-blank line becomes one ``DialogueSource``: its URI is ``<absolute file>#L<line>``; its
``sha256`` the dialogue's content hash (``Dialogue.content_hash``), so the ledger knows a dialogue
by what it says, wherever it sits. A line that is not a dialogue keeps the hash of its bytes and
an ``error`` naming file and line, and becomes a failed ledger row; the other lines go on.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from synthesis.dialogue import DialogueFormatError, parse_dialogue

SUFFIXES = (".jsonl", ".jsonl.gz", ".json")
MAX_LINE_BYTES = 4 * 1024 * 1024  # a longer line is refused (and still counted) rather than parsed


class DialogueInputError(ValueError):
    """An input that names no dialogue file; the message says which and why."""


@dataclass(frozen=True)
class DialogueSource:
    uri: str  # <file>#L<line>
    sha256: str
    size_bytes: int
    canonical: str | None  # the parsed dialogue's canonical JSON; None when the line is not a dialogue
    form: str | None
    source_id: str | None
    error: str | None = None


def dialogue_files(inputs: list[str]) -> list[Path]:
    """The JSONL files named by ``inputs`` (files, folders searched recursively, globs), in order, once each."""
    files: list[Path] = []
    for item in inputs:
        if any(c in item for c in "*?["):
            matched = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matched:
                raise DialogueInputError(f"{item}: the pattern matches no file")
            files.extend(p for p in matched if p.is_file())
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise DialogueInputError(f"{item}: the folder holds no {', '.join(SUFFIXES)} file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise DialogueInputError(f"{item}: not a regular file")
        else:
            raise DialogueInputError(f"{item}: no such file or folder")
    seen: set[Path] = set()
    out = []
    for f in files:
        resolved = f.resolve()
        if resolved not in seen:
            seen.add(resolved)
            out.append(resolved)
    return out


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw


def read_dialogues(inputs: list[str]) -> Iterator[DialogueSource]:
    """One ``DialogueSource`` per non-blank line of every file ``inputs`` name."""
    for path in dialogue_files(inputs):
        if not os.access(path, os.R_OK):
            raise DialogueInputError(f"{path}: cannot be read (permission denied)")
        try:
            for number, raw in _lines(path):
                if not raw.strip():
                    continue
                uri = f"{path}#L{number}"
                yield _source(uri, raw, f"{path}:{number}")
        except (OSError, EOFError) as exc:  # a truncated .gz, a read error: what was read stays
            raise DialogueInputError(f"{path}: cannot be read: {exc}") from None


def _source(uri: str, raw: bytes, where: str) -> DialogueSource:
    size = len(raw)
    byte_hash = hashlib.sha256(raw.strip()).hexdigest()
    if size > MAX_LINE_BYTES:
        return DialogueSource(uri, byte_hash, size, None, None, None,
                              f"{where}: line of {size} bytes is longer than {MAX_LINE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DialogueSource(uri, byte_hash, size, None, None, None, f"{where}: not UTF-8 (byte {exc.start})")
    try:
        dialogue = parse_dialogue(text)
    except DialogueFormatError as exc:
        return DialogueSource(uri, byte_hash, size, None, None, None, f"{where}: {exc}")
    return DialogueSource(uri, dialogue.content_hash(), size, dialogue.canonical(), dialogue.form, dialogue.source_id)
