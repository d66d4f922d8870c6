"""The stat cache: a source's content hash, reused while its file (or object) is unchanged.

A rerun over a million unchanged inputs must not read a million files. Each corpus keeps
``OUT/<corpus>/stat_cache.parquet``: source URI -> (stamp, size, SHA-256). A source whose
stamp equals its cached one takes the cached hash without a byte of it being read.

The stamp says "unchanged" only when the file system vouches for it:

- a local file: ``size``, ``mtime_ns``, ``ctime_ns`` and the inode. mtime alone can be set
  back by a writer (``touch -d``, ``cp -p``, an unpacker); ctime cannot be set from user
  space and moves with every write, rename onto the path or metadata change, so a file
  replaced or rewritten in place always misses the cache (a metadata-only change such as
  chmod just costs one re-hash);
- an object: its ETag (or version id) and size from the store's listing; an object store
  without either gets no stamp, and is hashed every run.

The cache is written only under the corpus lock (``refinery run``), atomically (tmp file +
rename, or one PUT), so a killed run leaves the previous cache. A stale or missing cache
only costs hashing, never a wrong hash: a stamp mismatch always re-hashes.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.layout import CorpusLayout
from manifests.shards import write_parquet
from manifests.storage import filesystem, is_remote

CACHE_SCHEMA = pa.schema([("uri", pa.string()), ("stamp", pa.string()), ("size_bytes", pa.int64()),
                          ("sha256", pa.string())])


class CachedHash(NamedTuple):  # a tuple: a million of them in a big corpus's cache
    stamp: str
    size_bytes: int
    sha256: str


def local_stamp(st: os.stat_result) -> str:
    """The stamp of a local file from its ``os.stat``."""
    return f"local:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def object_stamp(info: dict[str, Any]) -> str | None:
    """The stamp of an object from ``fs.info`` / a detailed listing; None when the store gives no version."""
    version = info.get("VersionId") or info.get("version_id") or info.get("ETag") or info.get("etag") \
        or info.get("md5Hash") or info.get("generation")
    size = info.get("size")
    if not version or size is None:
        return None
    return f"object:{size}:{str(version).strip(chr(34))}"


class StatCache:
    """URI -> CachedHash for one corpus, kept as Arrow columns and looked up many sources at a
    time (``lookup_many``, ``entries_for``): a million-entry cache is never a million-entry
    dict. ``update`` gathers what this run hashed; ``save`` writes once per run."""

    def __init__(self, layout: CorpusLayout, table: pa.Table | None = None) -> None:
        self.layout = layout
        self.table = table if table is not None else CACHE_SCHEMA.empty_table()
        self.updates: dict[str, CachedHash] = {}
        self.changed = False
        self._keys: pa.Array | None = None

    @property
    def path(self):
        return self.layout.root / "stat_cache.parquet"

    @classmethod
    def load(cls, layout: CorpusLayout) -> "StatCache":
        cache = cls(layout)
        try:
            if layout.is_local:
                table = pq.read_table(str(cache.path))
            else:
                with layout.fs.open(str(cache.path), "rb") as fh:
                    table = pq.read_table(fh)
            cache.table = table.select(CACHE_SCHEMA.names).cast(CACHE_SCHEMA)
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - an unreadable cache only costs hashing: start afresh
            cache.changed = True
        return cache

    @property
    def entries(self) -> dict[str, CachedHash]:
        """Every entry as a dict (small caches, tests)."""
        cols = [self.table.column(n).to_pylist() for n in CACHE_SCHEMA.names]
        return {**dict(zip(cols[0], map(CachedHash, *cols[1:]))), **self.updates}

    def _found(self, positions: pa.Array) -> list[CachedHash | None]:
        stamps, sizes, shas = (pc.take(self.table.column(n), positions).to_pylist()
                               for n in ("stamp", "size_bytes", "sha256"))
        return [CachedHash(t, n, h) if h is not None else None for t, n, h in zip(stamps, sizes, shas)]

    def entries_for(self, uris: list[str]) -> list[CachedHash | None]:
        """The cached entry of each URI (whatever its stamp), None where there is none."""
        found = self._found(pc.index_in(pa.array(uris, pa.string()), value_set=self.table.column("uri")))
        return [self.updates.get(u, f) for u, f in zip(uris, found)]

    def lookup_many(self, uris: list[str], stamps: list[str | None]) -> list[CachedHash | None]:
        """For each (uri, stamp): the cached hash when ``stamp`` is the one it was computed under."""
        if self._keys is None:
            self._keys = pc.binary_join_element_wise(self.table.column("uri"), self.table.column("stamp"), "\0")
        query = pc.binary_join_element_wise(pa.array(uris, pa.string()), pa.array(stamps, pa.string()), "\0")
        positions = pc.index_in(query, value_set=self._keys)
        sizes, shas = (pc.take(self.table.column(n), positions).to_pylist() for n in ("size_bytes", "sha256"))
        out = []
        for uri, stamp, size, sha in zip(uris, stamps, sizes, shas):
            new = self.updates.get(uri) if self.updates else None
            if new is not None:
                out.append(new if new.stamp == stamp else None)
            else:  # a hit's stamp is the one asked for: the query's string, not a copy
                out.append(CachedHash(stamp, size, sha) if sha is not None else None)
        return out

    def lookup(self, uri: str, stamp: str | None) -> CachedHash | None:
        """The cached hash of one source when ``stamp`` is the one it was computed under."""
        return self.lookup_many([uri], [stamp])[0] if stamp is not None else None

    def update(self, rows: Iterable[tuple[str, str | None, int | None, str | None]]) -> None:
        """(uri, stamp, size, sha256) of sources hashed this run; rows without a stamp or hash are dropped."""
        new = {uri: CachedHash(stamp, size, sha) for uri, stamp, size, sha in rows
               if stamp is not None and sha is not None and size is not None}
        if not new:
            return
        uris = list(new)
        for uri, old in zip(uris, self.entries_for(uris)):
            if old != new[uri]:
                self.updates[uri] = new[uri]
                self.changed = True

    def save(self) -> bool:
        """Write the cache (hold the corpus lock); False when nothing changed."""
        if not self.changed:
            return False
        kept = self.table
        if self.updates:
            kept = kept.filter(pc.invert(pc.is_in(kept.column("uri"), value_set=pa.array(list(self.updates)))))
        uris = list(self.updates)
        added = pa.table({"uri": uris, "stamp": [self.updates[u].stamp for u in uris],
                          "size_bytes": [self.updates[u].size_bytes for u in uris],
                          "sha256": [self.updates[u].sha256 for u in uris]}, schema=CACHE_SCHEMA)
        table = pa.concat_tables([kept, added]).sort_by("uri")
        write_parquet(self.layout, table, self.path)
        self.table, self.updates, self._keys, self.changed = table, {}, None, False
        return True


def source_stamp(path: str, storage: Any = None) -> str | None:
    """The stamp of a local path or an object URI now; None when it cannot be had (the hash step says why)."""
    try:
        if is_remote(path):
            fs, key = filesystem(path, storage)
            return object_stamp(fs.info(key))
        return local_stamp(os.stat(path))
    except Exception:  # noqa: BLE001 - unreadable: hashing it reports the reason
        return None


def changed_since(path: str, stamp: str | None, storage: Any = None) -> bool:
    """Whether the file (or object) at ``path`` is no longer the one whose stamp was ``stamp``
    (taken before its content hash was read). A missing stamp says nothing: False."""
    return stamp is not None and source_stamp(path, storage) != stamp
