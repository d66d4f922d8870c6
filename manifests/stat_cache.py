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
from dataclasses import dataclass
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.layout import CorpusLayout
from manifests.shards import write_parquet
from manifests.storage import filesystem, is_remote

CACHE_SCHEMA = pa.schema([("uri", pa.string()), ("stamp", pa.string()), ("size_bytes", pa.int64()),
                          ("sha256", pa.string())])


@dataclass(frozen=True)
class CachedHash:
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
    """URI -> CachedHash for one corpus; ``lookup`` / ``update`` in memory, ``save`` once per run."""

    def __init__(self, layout: CorpusLayout, entries: dict[str, CachedHash] | None = None) -> None:
        self.layout = layout
        self.entries: dict[str, CachedHash] = entries or {}
        self.changed = False

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
        except FileNotFoundError:
            return cache
        except Exception:  # noqa: BLE001 - an unreadable cache only costs hashing: start afresh
            cache.changed = True
            return cache
        cols = [table.column(n).to_pylist() for n in ("uri", "stamp", "size_bytes", "sha256")]
        cache.entries = {u: CachedHash(s, n, h) for u, s, n, h in zip(*cols)}
        return cache

    def lookup(self, uri: str, stamp: str | None) -> CachedHash | None:
        """The cached hash when ``stamp`` is the one it was computed under."""
        if stamp is None:
            return None
        hit = self.entries.get(uri)
        return hit if hit is not None and hit.stamp == stamp else None

    def update(self, rows: Iterable[tuple[str, str | None, int | None, str | None]]) -> None:
        """(uri, stamp, size, sha256) of sources hashed this run; rows without a stamp or hash are dropped."""
        for uri, stamp, size, sha in rows:
            if stamp is None or sha is None or size is None:
                continue
            new = CachedHash(stamp, size, sha)
            if self.entries.get(uri) != new:
                self.entries[uri] = new
                self.changed = True

    def save(self) -> bool:
        """Write the cache (hold the corpus lock); False when nothing changed."""
        if not self.changed:
            return False
        uris = sorted(self.entries)
        table = pa.table({
            "uri": uris,
            "stamp": [self.entries[u].stamp for u in uris],
            "size_bytes": [self.entries[u].size_bytes for u in uris],
            "sha256": [self.entries[u].sha256 for u in uris],
        }, schema=CACHE_SCHEMA)
        write_parquet(self.layout, table, self.path)
        self.changed = False
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
