"""A version's label records on their way to ``publish_version``, kept on local disk.

Publishing a campaign of 100,000 images used to hold every record in memory three times over
(the database rows, the record dicts, their JSON lines): the worker reached 1.9 GB. A version
is written one partition at a time anyway (``storage.dataset_versions``), so the records only
need to be grouped by partition, never held all at once:

* ``add`` serializes a record to its canonical JSON line as it arrives and appends it to a
  spool file (with its position and item_id), so the caller can drop the record at once;
* ``partitions(n)`` splits the spool into ``n`` partition files and hands back one partition
  at a time (``item_id -> line``), after checking that no item_id occurs twice.

Memory is then bounded by one partition (about ``shard_size`` records), whatever the number of
records; disk holds the records about twice. The spool lives in a temporary directory that
``close`` (or leaving the ``with`` block) removes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from storage.exports.common import canonical_json

__all__ = ["RecordSpool", "partition_of", "record_line"]

# How many partition files are open at once while splitting (more partitions: more passes).
_OPEN_FILES = 256


def partition_of(item_id: str, partitions: int) -> int:
    """The partition of ``item_id`` among ``partitions``: stable, and uniform over ids."""
    digest = hashlib.sha256(item_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % partitions


def record_line(record: Mapping[str, Any]) -> bytes:
    """A record's canonical JSON line (no newline): the same record always gives the same bytes."""
    return canonical_json(dict(record)).encode()


def _split(entry: bytes) -> tuple[int, str, bytes]:
    index, item_json, line = entry.rstrip(b"\n").split(b"\t", 2)
    return int(index), json.loads(item_json), line


class RecordSpool:
    """The records of one version, written to disk as they are added.

    Errors name the record by its position (``records[i]``), in the order records were added.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="quorum-spool-", dir=directory)
        self._path = Path(self._dir.name) / "records"
        self._file: IO[bytes] | None = self._path.open("wb")
        self._count = 0

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> RecordSpool:
        """A spool holding ``records`` (closed again if one of them is refused)."""
        spool = cls()
        try:
            for record in records:
                spool.add(record)
        except BaseException:
            spool.close()
            raise
        return spool

    def __len__(self) -> int:
        return self._count

    def add(self, record: Mapping[str, Any]) -> None:
        """Append ``record``; it must have a non-empty string ``item_id`` and be JSON."""
        index = self._count
        item_id = record.get("item_id") if isinstance(record, Mapping) else None
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"records[{index}]: item_id must be a non-empty string")
        try:
            line = record_line(record)
        except (TypeError, ValueError) as err:
            raise ValueError(f"records[{index}]: not JSON-serializable ({err})") from None
        self._append(item_id, line)

    def add_line(self, item_id: str, line: bytes) -> None:
        """Append a record already in its canonical line form (read from a stored version)."""
        if not item_id or b"\n" in line:
            raise ValueError(f"records[{self._count}]: not a record line")
        self._append(item_id, line)

    def _append(self, item_id: str, line: bytes) -> None:
        if self._file is None:
            raise ValueError("the spool is closed")
        item_json = json.dumps(item_id, ensure_ascii=False).encode()
        self._file.write(b"%d\t%s\t%s\n" % (self._count, item_json, line))
        self._count += 1

    def _entries(self) -> Iterator[bytes]:
        if self._file is None:
            raise ValueError("the spool is closed")
        self._file.flush()
        with self._path.open("rb") as source:
            yield from source

    def records(self) -> Iterator[dict[str, Any]]:
        """The records, parsed back, in the order they were added."""
        for entry in self._entries():
            record: dict[str, Any] = json.loads(_split(entry)[2])
            yield record

    def partitions(self, count: int) -> Iterator[dict[str, bytes]]:
        """Partition 0, 1, ... ``count - 1`` in turn, each as ``item_id -> line``.

        Every partition is split out and checked for repeated item_ids before the first one
        is handed back, so a caller that writes as it goes never starts on a bad spool.

        Raises:
            ValueError: ``records[i]: duplicate item_id ...`` for the first record (in the
                order added) whose item_id an earlier record had.
        """
        if count < 1:
            raise ValueError(f"count: must be a positive integer, got {count!r}")
        names = [Path(self._dir.name) / f"partition-{p:06d}" for p in range(count)]
        for start in range(0, count, _OPEN_FILES):
            stop = min(count, start + _OPEN_FILES)
            with ExitStack() as files:
                outs = [files.enter_context(names[p].open("wb")) for p in range(start, stop)]
                for entry in self._entries():
                    _, item_id, _ = _split(entry)
                    p = partition_of(item_id, count)
                    if start <= p < stop:
                        outs[p - start].write(entry)
        try:
            duplicate: tuple[int, str] | None = None
            for name in names:
                seen: set[str] = set()
                with name.open("rb") as source:
                    for entry in source:
                        index, item_id, _ = _split(entry)
                        if item_id in seen and (duplicate is None or index < duplicate[0]):
                            duplicate = (index, item_id)
                        seen.add(item_id)
            if duplicate is not None:
                raise ValueError(f"records[{duplicate[0]}]: duplicate item_id {duplicate[1]!r}")
            for name in names:
                group: dict[str, bytes] = {}
                with name.open("rb") as source:
                    for entry in source:
                        _, item_id, line = _split(entry)
                        group[item_id] = line
                yield group
        finally:
            for name in names:
                name.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._dir.cleanup()

    def __enter__(self) -> RecordSpool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
