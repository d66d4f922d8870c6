"""Where a corpus keeps its files under the output directory (a local path or an object-store URI).

    OUT/<corpus>/segments/run=<run_id>/part-NNNNN.parquet   visible segment shards
    OUT/<corpus>/dialogues/run=<run_id>/part-NNNNN.parquet  visible dialogue shards (a synthesis corpus)
    OUT/<corpus>/ledger/run=<run_id>/commit-NNNNN.parquet   committed ledger rows
    OUT/<corpus>/runs/<run_id>/config.yaml, summary.json    what each run used and did
    OUT/<corpus>/_staging/run=<run_id>/...                  shards written, not yet committed
    OUT/<corpus>/quarantine/<time>/segments/...             files recovery found under segments/ unnamed
    OUT/<corpus>/.lock                                      held by the one running run

Names starting with "_" or "." are skipped by pyarrow datasets and by `datasets`' globbing,
so nothing under _staging is ever read as data.

On an object store (``--out s3://bucket/prefix``) there is no rename: shards are written
straight under ``segments/run=<run_id>/part-<uuid>.parquet`` and are visible only when a
committed ledger row names them, ``.lock`` is a lease object (see ``manifests.ledger`` and
``manifests.lock``). Readers take the shard list from the ledger (``Ledger.shard_files``),
on a local output too, never by globbing: a file copied under ``segments/`` is no data.

Paths are ``pathlib.Path`` on a local output (as before: callers may use pathlib on them)
and ``PurePosixPath`` ``bucket/prefix/...`` on an object store; either way ``layout.fs``
(fsspec) reads and writes them, given as ``str(path)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import fsspec

from manifests.storage import Storage, as_url, filesystem, is_local_fs, is_remote, local_path


CORPUS_KINDS = ("segments", "dialogues")
# A corpus name is one path component (OUT/<corpus>/): file systems take at most 255 bytes there.
MAX_CORPUS_NAME_BYTES = 255


def check_corpus_name(name: str) -> None:
    """ValueError (one line) for a name that cannot be a corpus folder: empty, with '/', a leading
    '.'/'_' (hidden from readers), a control character, or longer than one path component may be."""
    if not name or "/" in name or name.startswith((".", "_")):
        raise ValueError(f"invalid corpus name {name!r}: use a plain name without '/' or a leading '.'/'_'")
    if not name.isprintable():
        raise ValueError(f"invalid corpus name {name!r}: it holds a control character")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_CORPUS_NAME_BYTES:
        raise ValueError(f"invalid corpus name {name[:20]!r}...: {size} bytes long, the limit is "
                         f"{MAX_CORPUS_NAME_BYTES} (the name is a folder name under OUT)")


@dataclass(frozen=True)
class CorpusLayout:
    """``kind``: what the corpus holds, ``segments`` (``refinery run``) or ``dialogues``
    (``refinery synth run``); None: read off the output (a ``dialogues/`` folder or kind marker)."""

    out_dir: PurePath  # given as a path or URI; kept as the path on ``fs``
    corpus: str
    storage: Storage = field(default=None, repr=False, compare=False)
    kind: str | None = field(default=None, compare=False)
    fs: fsspec.AbstractFileSystem = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_corpus_name(self.corpus)
        text = as_url(self.out_dir)
        if is_remote(text):
            fs, path = filesystem(text, self.storage)
            object.__setattr__(self, "out_dir", PurePosixPath(path.rstrip("/")))
        else:
            fs = filesystem(text)[0]
            object.__setattr__(self, "out_dir", local_path(text))
        object.__setattr__(self, "fs", fs)
        if self.kind is None:
            object.__setattr__(self, "kind", self.stored_kind() or "segments")
        elif self.kind not in CORPUS_KINDS:
            raise ValueError(f"corpus kind {self.kind!r} is not one of {', '.join(CORPUS_KINDS)}")

    def stored_kind(self) -> str | None:
        """The kind recorded in the corpus (``OUT/<corpus>/kind``), None for a new corpus. Outputs
        written before the marker existed hold segments."""
        try:
            text = self.fs.cat_file(str(self.kind_path)).decode().strip()
        except (FileNotFoundError, OSError):
            return "segments" if self.fs.exists(str(self.ledger_dir)) else None
        return text if text in CORPUS_KINDS else None

    def claim_kind(self) -> None:
        """Record this layout's kind in the corpus; refuse a corpus that holds the other kind."""
        stored = self.stored_kind()
        if stored is not None and stored != self.kind:
            raise ValueError(f"corpus {self.corpus!r} holds {stored}, not {self.kind}: use another corpus name")
        if not self.fs.exists(str(self.kind_path)):
            self.write_text(self.kind_path, f"{self.kind}\n")

    # ---- where the output is -----------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return is_local_fs(self.fs)

    @property
    def writes_in_place(self) -> bool:
        """Shards are written under their final name (object stores: no rename to commit with)."""
        return not self.is_local

    @property
    def url(self) -> str:
        """The output directory as a URI or absolute path, for workers and messages."""
        return self.uri(self.out_dir)

    def uri(self, path: PurePath | str) -> str:
        return str(Path(path).absolute()) if self.is_local else self.fs.unstrip_protocol(str(path))

    # ---- the layout --------------------------------------------------------------------
    @property
    def root(self) -> PurePath:
        return self.out_dir / self.corpus

    @property
    def segments_dir(self) -> PurePath:
        return self.root / "segments"

    @property
    def dialogues_dir(self) -> PurePath:
        return self.root / "dialogues"

    @property
    def data_dir(self) -> PurePath:
        """Where this corpus's visible shards are: ``segments/`` or ``dialogues/``."""
        return self.dialogues_dir if self.kind == "dialogues" else self.segments_dir

    @property
    def kind_path(self) -> PurePath:
        return self.root / "kind"

    @property
    def ledger_dir(self) -> PurePath:
        return self.root / "ledger"

    @property
    def runs_dir(self) -> PurePath:
        return self.root / "runs"

    @property
    def staging_dir(self) -> PurePath:
        return self.root / "_staging"

    @property
    def quarantine_dir(self) -> PurePath:
        """Where recovery moves files under the shard folder that no ledger row names."""
        return self.root / "quarantine"

    @property
    def lock_path(self) -> PurePath:
        return self.root / ".lock"

    def run_dir(self, run_id: str) -> PurePath:
        return self.runs_dir / run_id

    def staging_run_dir(self, run_id: str) -> PurePath:
        return self.staging_dir / f"run={run_id}"

    def shard_path(self, run_id: str, index: int) -> PurePath:
        return self.data_dir / f"run={run_id}" / f"part-{index:05d}.parquet"

    def ledger_commit_path(self, run_id: str, index: int) -> PurePath:
        return self.ledger_dir / f"run={run_id}" / f"commit-{index:05d}.parquet"

    def rel(self, path: PurePath | str) -> str:
        return PurePath(path).relative_to(self.root).as_posix()

    def abs(self, rel: str) -> PurePath:
        return self.root / rel

    # ---- file access through ``fs`` ----------------------------------------------------
    def files(self, directory: PurePath, pattern: str | None = None) -> list[PurePath]:
        """Files under ``directory`` (recursively), those whose relative path matches ``pattern`` if given."""
        if self.is_local:
            d = Path(directory)
            if not d.is_dir():
                return []
            found = d.glob(pattern) if pattern else d.rglob("*")
            return sorted(p for p in found if p.is_file())
        want = PurePosixPath(pattern).parts if pattern else None
        out = []
        for name in self.fs.find(str(directory)):
            path = PurePosixPath(name)
            rel = path.relative_to(directory)
            if want is None or (len(rel.parts) == len(want) and rel.match(pattern)):
                out.append(path)
        return sorted(out)

    def exists(self, path: PurePath) -> bool:
        return self.fs.exists(str(path))

    def write_text(self, path: PurePath, text: str) -> None:
        """A small text file (run config, inputs, summary), complete or absent on an object store."""
        if self.is_local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            try:
                Path(path).write_text(text)
            except OSError as exc:
                if exc.filename is not None or exc.errno is None:
                    raise
                raise OSError(exc.errno, exc.strerror, str(path)) from exc  # a failed write names no file
        else:
            self.fs.pipe_file(str(path), text.encode())

    @property
    def arrow_filesystem(self) -> Any:
        """What pyarrow readers take as ``filesystem=``: None (its own local one) or the fsspec store."""
        return None if self.is_local else self.fs


def corpora(out_dir: PurePath | str, storage: Storage = None) -> list[str]:
    """Corpus names under an output directory (those holding a ledger)."""
    text = as_url(out_dir)
    if not is_remote(text):
        out = local_path(text)
        if not out.is_dir():
            return []
        return sorted(p.name for p in out.iterdir() if (p / "ledger").is_dir() and not p.name.startswith((".", "_")))
    fs, root = filesystem(text, storage)
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    names = [PurePosixPath(e["name"]).name for e in entries if e.get("type") == "directory"]
    return sorted(n for n in names if not n.startswith((".", "_")) and fs.isdir(f"{root.rstrip('/')}/{n}/ledger"))
