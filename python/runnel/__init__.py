"""runnel: an embedded Kafka-style partitioned log, from Python.

Open a data directory and get Kafka's model with no server to run: topics and partitions, append,
fetch by offset, consumer-group offsets, idempotent and transactional producers, retention.

    import runnel

    with runnel.open("runnel-data") as log:
        log.create_topic("events", partitions=1)
        log.append("events", [b"hello", runnel.Record(value=b"world", key=b"k")], partition=0)
        with log.fetch("events", 0, offset=0) as records:
            for r in records:
                print(r.offset, r.key, r.value)

Keys, values and header values are bytes; a str is encoded as UTF-8 on the way in (deliberately:
what comes back is always bytes). Errors are raised as subclasses of :class:`runnel.Error`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

from ._ffi import CONSTANTS, ffi, lib

__all__ = [
    "open",
    "Log",
    "Record",
    "RecordView",
    "Fetched",
    "AppendResult",
    "PartitionInfo",
    "PartitionLag",
    "IdempotentProducer",
    "TransactionalProducer",
    "Error",
    "InvalidHandleError",
    "LockedError",
    "InvalidTopicError",
    "TopicExistsError",
    "UnknownTopicOrPartitionError",
    "InvalidArgumentError",
    "OffsetOutOfRangeError",
    "RecordTooLargeError",
    "CorruptError",
    "RunnelIOError",
    "PoisonedError",
    "ReadOnlyError",
    "ClosedError",
    "ProducerFencedError",
    "OutOfOrderSequenceError",
    "UnknownProducerIdError",
    "InvalidTransactionStateError",
    "RunnelTimeoutError",
    "CommitFailedError",
    "version",
]

Bytes = Union[bytes, bytearray, memoryview, str]

# Constants from the header.
NO_TIMESTAMP: int = CONSTANTS["RUNNEL_NO_TIMESTAMP"]
ANY_PARTITION: int = CONSTANTS["RUNNEL_ANY_PARTITION"]


# ------------------------------------------------------------------------------------------------
# Errors


class Error(Exception):
    """A runnel call failed. ``code`` is the C ABI's result code, ``name`` its name."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.name = ffi.string(lib.runnel_result_name(code)).decode()


class InvalidHandleError(Error):
    """The object was closed or freed already."""


class LockedError(Error):
    """Another writer (in this process or another) holds the data directory."""


class InvalidTopicError(Error):
    """The topic name breaks Kafka's naming rules."""


class TopicExistsError(Error):
    """The topic already exists."""


class UnknownTopicOrPartitionError(Error):
    """The topic or partition does not exist."""


class InvalidArgumentError(Error, ValueError):
    """An argument or setting is not acceptable."""


class OffsetOutOfRangeError(Error):
    """The offset is outside [log start offset, high watermark]."""


class RecordTooLargeError(Error):
    """A batch is larger than the topic's max.message.bytes."""


class CorruptError(Error):
    """Bytes on disk are not what runnel wrote."""


class RunnelIOError(Error, OSError):
    """An operating-system call failed."""


class PoisonedError(Error):
    """The partition refuses writes after an earlier I/O failure; reopen the log."""


class ReadOnlyError(Error):
    """The log was opened read-only, or the topic is internal."""


class ClosedError(Error):
    """The log was closed."""


class ProducerFencedError(Error):
    """A newer producer with the same transactional id took over."""


class OutOfOrderSequenceError(Error):
    """An idempotent producer's batch skipped a sequence number."""


class UnknownProducerIdError(Error):
    """The partition has no state for the producer id."""


class InvalidTransactionStateError(Error):
    """A transactional call out of turn."""


class RunnelTimeoutError(Error, TimeoutError):
    """A call waited as long as it was allowed to."""


class CommitFailedError(Error):
    """A consumer's commit was refused: the group moved the partition on."""


_R = lib  # result codes are enum constants on the library object
_ERRORS = {
    _R.RUNNEL_NULL_ARGUMENT: InvalidArgumentError,
    _R.RUNNEL_INVALID_UTF8: InvalidArgumentError,
    _R.RUNNEL_INVALID_HANDLE: InvalidHandleError,
    _R.RUNNEL_LOCKED: LockedError,
    _R.RUNNEL_INVALID_TOPIC: InvalidTopicError,
    _R.RUNNEL_TOPIC_EXISTS: TopicExistsError,
    _R.RUNNEL_UNKNOWN_TOPIC_OR_PARTITION: UnknownTopicOrPartitionError,
    _R.RUNNEL_INVALID_ARGUMENT: InvalidArgumentError,
    _R.RUNNEL_OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    _R.RUNNEL_RECORD_TOO_LARGE: RecordTooLargeError,
    _R.RUNNEL_CORRUPT: CorruptError,
    _R.RUNNEL_IO: RunnelIOError,
    _R.RUNNEL_POISONED: PoisonedError,
    _R.RUNNEL_READ_ONLY: ReadOnlyError,
    _R.RUNNEL_CLOSED: ClosedError,
    _R.RUNNEL_PRODUCER_FENCED: ProducerFencedError,
    _R.RUNNEL_OUT_OF_ORDER_SEQUENCE: OutOfOrderSequenceError,
    _R.RUNNEL_UNKNOWN_PRODUCER_ID: UnknownProducerIdError,
    _R.RUNNEL_INVALID_TRANSACTION_STATE: InvalidTransactionStateError,
    _R.RUNNEL_TIMEOUT: RunnelTimeoutError,
    _R.RUNNEL_COMMIT_FAILED: CommitFailedError,
}


def _check(code: int) -> int:
    """Raises the error for a failed call; returns OK and DONE."""
    if code == lib.RUNNEL_OK or code == lib.RUNNEL_DONE:
        return code
    message = ffi.string(lib.runnel_last_error()).decode("utf-8", "replace")
    raise _ERRORS.get(code, Error)(code, message)


def _c_str(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    b = s.encode("utf-8")
    if b"\0" in b:
        raise InvalidArgumentError(lib.RUNNEL_INVALID_ARGUMENT, f"{what} contains a NUL character")
    return b


def _to_bytes(v: Optional[Bytes], what: str) -> Optional[bytes]:
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{what} must be bytes, str or None, not {type(v).__name__}")


def version() -> str:
    """The C library's version, such as "0.1.0"."""
    return ffi.string(lib.runnel_version()).decode()


_ACKS = {"0": 0, 0: 0, "1": 1, 1: 1, "all": -1, -1: -1}
_ISOLATION = {"read_uncommitted": 0, "read_committed": 1}


def _acks(acks: Union[str, int]) -> int:
    try:
        return _ACKS[acks]
    except (KeyError, TypeError):
        raise InvalidArgumentError(lib.RUNNEL_INVALID_ARGUMENT, f"acks must be 0, 1 or 'all', not {acks!r}") from None


def _isolation(isolation: str) -> int:
    try:
        return _ISOLATION[isolation]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            lib.RUNNEL_INVALID_ARGUMENT, f"isolation must be 'read_uncommitted' or 'read_committed', not {isolation!r}"
        ) from None


def _pairs(items: Mapping[str, object], what: str):
    """A C array of 2n strings, and the objects that keep its strings alive."""
    keep = [ffi.new("char[]", _c_str(str(x), what)) for kv in items.items() for x in kv]
    arr = ffi.new("const char *[]", keep) if keep else ffi.NULL
    return arr, len(items), keep


# ------------------------------------------------------------------------------------------------
# Records


@dataclass
class Record:
    """A record to append. ``timestamp`` is milliseconds since the epoch (None: now)."""

    value: Optional[Bytes] = None
    key: Optional[Bytes] = None
    headers: Sequence[tuple[str, Optional[Bytes]]] = field(default_factory=list)
    timestamp: Optional[int] = None


@dataclass(frozen=True)
class AppendResult:
    """Where an append went."""

    partition: int
    base_offset: int
    last_offset: int
    log_append_time: int


@dataclass(frozen=True)
class PartitionInfo:
    """A partition's offsets and size."""

    partition: int
    log_start_offset: int
    high_watermark: int
    durable_offset: int
    log_end_offset: int
    last_stable_offset: int
    segment_count: int
    size_bytes: int


@dataclass(frozen=True)
class PartitionLag:
    """A group's lag on one partition."""

    topic: str
    partition: int
    committed: int
    high_watermark: int
    lag: int


class _Records:
    """A batch of records in C form, and the Python objects its pointers point into (the record
    bytes are handed over without a copy, through ``ffi.from_buffer``)."""

    def __init__(self, records: Iterable[Union[Record, Bytes]]):
        records = list(records)
        self.keep: list = []
        self.array = ffi.new("runnel_record[]", max(len(records), 1))
        self.n = len(records)
        for i, r in enumerate(records):
            if not isinstance(r, Record):
                r = Record(value=r)
            c = self.array[i]
            c.key, c.key_len = self._buf(_to_bytes(r.key, "key"))
            c.value, c.value_len = self._buf(_to_bytes(r.value, "value"))
            c.timestamp = NO_TIMESTAMP if r.timestamp is None else int(r.timestamp)
            if r.headers:
                hs = ffi.new("runnel_header[]", len(r.headers))
                self.keep.append(hs)
                for j, (k, v) in enumerate(r.headers):
                    hs[j].key, hs[j].key_len = self._buf(_to_bytes(k, "header key") or b"")
                    hs[j].value, hs[j].value_len = self._buf(_to_bytes(v, "header value"))
                c.headers, c.headers_len = hs, len(r.headers)
            else:
                c.headers, c.headers_len = ffi.NULL, 0

    def _buf(self, b: Optional[bytes]):
        if b is None:
            return ffi.NULL, 0
        if not b:
            # An empty value is not a null one: a one-byte buffer gives it a non-NULL pointer.
            b = b"\0"
            cb = ffi.from_buffer(b)
            self.keep.append(cb)
            return cb, 0
        cb = ffi.from_buffer(b)
        self.keep.append(cb)
        return cb, len(b)


def _plain_values(records: list) -> bool:
    """Whether every item is a plain bytes value (the packed, cheapest path)."""
    return all(type(r) is bytes for r in records)


def _append_result(out) -> AppendResult:
    return AppendResult(out.partition, out.base_offset, out.last_offset, out.log_append_time)


_NULL_SPAN = (1 << 64) - 1


class RecordView:
    """A fetched record. ``key`` and ``value`` are bytes copies; ``key_view`` and ``value_view`` are
    zero-copy read-only memoryviews of the log's memory map, which keep the fetch's mapping alive
    for as long as they exist (using one after the fetch is closed is safe)."""

    __slots__ = ("_fetched", "_index")

    def __init__(self, fetched: "Fetched", index: int):
        self._fetched = fetched
        self._index = index

    def _span(self, at: int) -> Optional[memoryview]:
        spans = self._fetched._spans
        start = spans[6 * self._index + at]
        if start == _NULL_SPAN:
            return None
        return self._fetched._view[start : start + spans[6 * self._index + at + 1]]

    @property
    def offset(self) -> int:
        """The record's offset."""
        return self._fetched._spans[6 * self._index]

    @property
    def timestamp(self) -> int:
        """Milliseconds since the Unix epoch."""
        t = self._fetched._spans[6 * self._index + 1]
        return t - (1 << 64) if t >= 1 << 63 else t

    @property
    def key_view(self) -> Optional[memoryview]:
        """The key, zero-copy (None for a null key)."""
        return self._span(2)

    @property
    def value_view(self) -> Optional[memoryview]:
        """The value, zero-copy (None for a null value)."""
        return self._span(4)

    @property
    def key(self) -> Optional[bytes]:
        """The key as bytes (None for a null key)."""
        v = self._span(2)
        return None if v is None else bytes(v)

    @property
    def value(self) -> Optional[bytes]:
        """The value as bytes (None for a null value)."""
        v = self._span(4)
        return None if v is None else bytes(v)

    @property
    def headers(self) -> list[tuple[str, Optional[bytes]]]:
        """The headers: (key, value) pairs; keys decoded as UTF-8."""
        out = []
        h = ffi.new("runnel_header *")
        handle = self._fetched._handle_or_raise()
        view = ffi.new("runnel_record_view *")
        _check(lib.runnel_fetched_get(handle, self._index, view))
        for i in range(view.headers_len):
            _check(lib.runnel_fetched_header(handle, self._index, i, h))
            k = bytes(ffi.buffer(h.key, h.key_len)).decode("utf-8", "replace")
            v = None if h.value == ffi.NULL else bytes(ffi.buffer(h.value, h.value_len))
            out.append((k, v))
        return out

    def __repr__(self) -> str:
        return f"RecordView(offset={self.offset}, timestamp={self.timestamp}, key={self.key!r}, value={self.value!r})"


class Fetched:
    """The result of a fetch: iterate it for :class:`RecordView` s, or take ``values()``. A context
    manager; ``close`` releases it once no memoryview of its records is alive any more."""

    def __init__(self, handle):
        self._handle = handle
        self.count: int = lib.runnel_fetched_count(handle)
        self.next_offset: int = lib.runnel_fetched_next_offset(handle)
        self.high_watermark: int = lib.runnel_fetched_high_watermark(handle)
        ptr = ffi.new("const uint8_t **")
        length = ffi.new("size_t *")
        try:
            _check(lib.runnel_fetched_bytes(handle, ptr, length))
            # Every record's layout in one call: (offset, timestamp, key start, key length, value
            # start, value length), starts relative to the fetched bytes.
            spans = ffi.new("uint64_t[]", max(6 * self.count, 1))
            _check(lib.runnel_fetched_spans(handle, spans, self.count, ffi.NULL))
        except BaseException:
            lib.runnel_fetched_free(handle)
            raise
        self._spans: list[int] = ffi.unpack(spans, 6 * self.count)
        # The memoryview owns the handle: `owner` frees it when garbage collected, and every slice
        # of the view keeps `owner` alive through the cffi buffer, so no view can outlive the map.
        owner = ffi.gc(ffi.cast("uint8_t *", ptr[0]), lambda _p, h=handle: lib.runnel_fetched_free(h))
        self._view = memoryview(ffi.buffer(owner, length[0])).toreadonly()

    def _handle_or_raise(self):
        if self._handle is None:
            raise ClosedError(lib.RUNNEL_INVALID_HANDLE, "the fetch was closed")
        return self._handle

    def records(self) -> list[RecordView]:
        """Every record, in offset order."""
        self._handle_or_raise()
        return [RecordView(self, i) for i in range(self.count)]

    def values(self) -> list[Optional[bytes]]:
        """Every record's value as bytes (None for null values), in offset order: the quickest
        way to read a fetch from Python."""
        self._handle_or_raise()
        s, mv = self._spans, self._view
        return [None if s[i] == _NULL_SPAN else bytes(mv[s[i] : s[i] + s[i + 1]]) for i in range(4, 6 * self.count, 6)]

    def __iter__(self) -> Iterator[RecordView]:
        return iter(self.records())

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        """Drops this object's hold on the fetch; the mapping goes when no memoryview needs it."""
        self._handle = None
        self._view = memoryview(b"")
        self._spans = []

    def __enter__(self) -> "Fetched":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# The log


class Log:
    """An open data directory. Thread-safe. Use :func:`runnel.open`."""

    def __init__(self, handle):
        self._h = handle

    def _handle(self):
        if self._h is None:
            raise ClosedError(lib.RUNNEL_CLOSED, "the log is closed")
        return self._h

    # Opening and closing.

    def close(self) -> None:
        """Closes the log cleanly. Idempotent."""
        h, self._h = self._h, None
        if h is not None:
            _check(lib.runnel_close(h))

    def __enter__(self) -> "Log":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def shared(self) -> bool:
        """Whether the log was opened with ``shared=True``."""
        return lib.runnel_is_shared(self._handle()) == 1

    @property
    def read_only(self) -> bool:
        """Whether the log was opened read-only."""
        return lib.runnel_is_read_only(self._handle()) == 1

    # Topics.

    def create_topic(self, name: str, partitions: int = 1, config: Optional[Mapping[str, object]] = None) -> None:
        """Creates a topic; ``config`` takes Kafka's topic config names ("retention.ms", ...)."""
        arr, n, _keep = _pairs(config or {}, "config")
        _check(lib.runnel_topic_create(self._handle(), _c_str(name, "topic"), partitions, arr, n))

    def delete_topic(self, name: str) -> None:
        """Deletes a topic and its data."""
        _check(lib.runnel_topic_delete(self._handle(), _c_str(name, "topic")))

    def add_partitions(self, name: str, partitions: int) -> None:
        """Raises a topic's partition count to ``partitions``."""
        _check(lib.runnel_topic_add_partitions(self._handle(), _c_str(name, "topic"), partitions))

    def partition_count(self, name: str) -> int:
        """A topic's partition count."""
        out = ffi.new("uint32_t *")
        _check(lib.runnel_topic_partition_count(self._handle(), _c_str(name, "topic"), out))
        return out[0]

    def list_topics(self) -> list[str]:
        """The topics, sorted (internal ones, such as __consumer_offsets, included)."""
        out = ffi.new("runnel_string_list **")
        _check(lib.runnel_topic_list(self._handle(), out))
        return _strings(out[0])

    def describe_topic(self, name: str) -> tuple[dict[str, str], list[PartitionInfo]]:
        """A topic's config and its partitions' offsets."""
        out = ffi.new("runnel_topic_description **")
        _check(lib.runnel_topic_describe(self._handle(), _c_str(name, "topic"), out))
        d = out[0]
        try:
            config = {}
            k = ffi.new("const char **")
            v = ffi.new("const char **")
            for i in range(lib.runnel_topic_description_config_len(d)):
                _check(lib.runnel_topic_description_config(d, i, k, v))
                config[ffi.string(k[0]).decode()] = ffi.string(v[0]).decode()
            parts = []
            info = ffi.new("runnel_partition_info *")
            for i in range(lib.runnel_topic_description_partitions(d)):
                _check(lib.runnel_topic_description_partition(d, i, info))
                parts.append(_info(info))
            return config, parts
        finally:
            lib.runnel_topic_description_free(d)

    def partition_info(self, topic: str, partition: int) -> PartitionInfo:
        """One partition's offsets (log start = earliest, high watermark = latest) and size."""
        info = ffi.new("runnel_partition_info *")
        _check(lib.runnel_partition_offsets(self._handle(), _c_str(topic, "topic"), partition, info))
        return _info(info)

    def offset_for_timestamp(self, topic: str, partition: int, timestamp: int) -> Optional[tuple[int, int]]:
        """The first (offset, timestamp) at or after ``timestamp``; None if no record is that late."""
        off = ffi.new("uint64_t *")
        ts = ffi.new("int64_t *")
        r = _check(lib.runnel_offset_for_timestamp(self._handle(), _c_str(topic, "topic"), partition, timestamp, off, ts))
        return None if r == lib.RUNNEL_DONE else (off[0], ts[0])

    # Append and fetch.

    def append(
        self,
        topic: str,
        records: Iterable[Union[Record, Bytes]],
        partition: Optional[int] = None,
        acks: Union[str, int] = "all",
    ) -> AppendResult:
        """Appends ``records`` (Record objects, or bytes/str values) as one batch to ``partition``
        (None: the default partitioner by the first record's key) with ``acks`` 0, 1 or "all"."""
        records = list(records)
        out = ffi.new("runnel_append_result *")
        p = ANY_PARTITION if partition is None else partition
        if records and _plain_values(records):
            # Values only: one buffer and a list of lengths.
            data = b"".join(records)
            lens = ffi.new("size_t[]", [len(r) for r in records])
            buf = ffi.from_buffer(data) if data else ffi.NULL
            _check(lib.runnel_append_packed(self._handle(), _c_str(topic, "topic"), p, buf, len(data), lens, len(records), _acks(acks), out))
            return _append_result(out)
        rs = _Records(records)
        _check(lib.runnel_append(self._handle(), _c_str(topic, "topic"), p, rs.array, rs.n, _acks(acks), out))
        return _append_result(out)

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_bytes: int = 1 << 20,
        isolation: str = "read_uncommitted",
        timeout: Optional[float] = None,
    ) -> Fetched:
        """Fetches complete batches from ``offset`` on, up to about ``max_bytes``. With ``timeout``
        (seconds), waits that long for records at ``offset`` if there are none yet."""
        out = ffi.new("runnel_fetched **")
        t = _c_str(topic, "topic")
        if timeout is None:
            _check(lib.runnel_fetch(self._handle(), t, partition, offset, max_bytes, _isolation(isolation), out))
        else:
            ms = max(0, int(timeout * 1000))
            _check(lib.runnel_fetch_wait(self._handle(), t, partition, offset, max_bytes, _isolation(isolation), ms, out))
        return Fetched(out[0])

    def send_to(self, topic: str, partition: int, offset: int, fd: int, max_bytes: int = 1 << 20) -> tuple[int, int]:
        """Copies the raw batches a fetch would return to file descriptor ``fd`` with sendfile(2).
        Returns (bytes sent, next offset)."""
        b = ffi.new("uint64_t *")
        n = ffi.new("uint64_t *")
        _check(lib.runnel_send_to_fd(self._handle(), _c_str(topic, "topic"), partition, offset, max_bytes, fd, b, n))
        return b[0], n[0]

    def sync(self) -> None:
        """Syncs every partition."""
        _check(lib.runnel_sync(self._handle()))

    def run_retention(self) -> int:
        """Applies retention now; returns the number of segments deleted."""
        out = ffi.new("size_t *")
        _check(lib.runnel_run_retention(self._handle(), out))
        return out[0]

    # Consumer groups.

    def commit_offset(self, group: str, topic: str, partition: int, offset: int, metadata: str = "") -> None:
        """Commits ``offset`` (the next to consume) for ``group``. Durable when it returns."""
        _check(
            lib.runnel_commit_offset(
                self._handle(), _c_str(group, "group"), _c_str(topic, "topic"), partition, offset, _c_str(metadata, "metadata")
            )
        )

    def committed(self, group: str, topic: str, partition: int) -> Optional[int]:
        """The group's committed offset, or None."""
        out = ffi.new("uint64_t *")
        r = _check(lib.runnel_committed(self._handle(), _c_str(group, "group"), _c_str(topic, "topic"), partition, out))
        return None if r == lib.RUNNEL_DONE else out[0]

    def list_groups(self) -> list[str]:
        """The groups with committed offsets, sorted."""
        out = ffi.new("runnel_string_list **")
        _check(lib.runnel_group_list(self._handle(), out))
        return _strings(out[0])

    def group_lag(self, group: str) -> list[PartitionLag]:
        """The group's lag on each partition it committed for."""
        out = ffi.new("runnel_lag_list **")
        _check(lib.runnel_group_lag(self._handle(), _c_str(group, "group"), out))
        lst = out[0]
        try:
            entry = ffi.new("runnel_partition_lag *")
            result = []
            for i in range(lib.runnel_lag_list_len(lst)):
                _check(lib.runnel_lag_list_get(lst, i, entry))
                result.append(PartitionLag(ffi.string(entry.topic).decode(), entry.partition, entry.committed, entry.high_watermark, entry.lag))
            return result
        finally:
            lib.runnel_lag_list_free(lst)

    def delete_group(self, group: str) -> bool:
        """Deletes a group's offsets; whether it had any."""
        out = ffi.new("int *")
        _check(lib.runnel_group_delete(self._handle(), _c_str(group, "group"), out))
        return out[0] == 1

    # Producers.

    def idempotent_producer(self) -> "IdempotentProducer":
        """A producer whose retried appends are stored once."""
        out = ffi.new("runnel_idempotent_producer **")
        _check(lib.runnel_idempotent_producer_new(self._handle(), out))
        return IdempotentProducer(out[0])

    def transactional_producer(self, transactional_id: str, timeout: Optional[float] = None) -> "TransactionalProducer":
        """A transactional producer (fences an earlier one with the same id)."""
        out = ffi.new("runnel_transactional_producer **")
        ms = 0 if timeout is None else max(1, int(timeout * 1000))
        _check(lib.runnel_transactional_producer_new(self._handle(), _c_str(transactional_id, "transactional_id"), ms, out))
        return TransactionalProducer(out[0])


def _info(info) -> PartitionInfo:
    return PartitionInfo(
        info.partition,
        info.log_start_offset,
        info.high_watermark,
        info.durable_offset,
        info.log_end_offset,
        info.last_stable_offset,
        info.segment_count,
        info.size_bytes,
    )


def _strings(handle) -> list[str]:
    try:
        return [ffi.string(lib.runnel_string_list_get(handle, i)).decode() for i in range(lib.runnel_string_list_len(handle))]
    finally:
        lib.runnel_string_list_free(handle)


class IdempotentProducer:
    """A producer id plus a sequence per partition: a retried send is stored once."""

    def __init__(self, handle):
        self._h = ffi.gc(handle, lib.runnel_idempotent_producer_free)

    @property
    def producer_id(self) -> int:
        return lib.runnel_idempotent_producer_id(self._h)

    def send(self, topic: str, records: Iterable[Union[Record, Bytes]], partition: Optional[int] = None, acks: Union[str, int] = "all") -> AppendResult:
        rs = _Records(records)
        out = ffi.new("runnel_append_result *")
        p = ANY_PARTITION if partition is None else partition
        _check(lib.runnel_idempotent_producer_send(self._h, _c_str(topic, "topic"), p, rs.array, rs.n, _acks(acks), out))
        return _append_result(out)


class TransactionalProducer:
    """Kafka's transactional producer: begin, send, send_offset, commit or abort. A context
    manager: leaving the block with an exception aborts the open transaction."""

    def __init__(self, handle):
        self._h = ffi.gc(handle, lib.runnel_transactional_producer_free)

    def begin(self) -> None:
        _check(lib.runnel_transaction_begin(self._h))

    def send(self, topic: str, records: Iterable[Union[Record, Bytes]], partition: Optional[int] = None) -> AppendResult:
        rs = _Records(records)
        out = ffi.new("runnel_append_result *")
        p = ANY_PARTITION if partition is None else partition
        _check(lib.runnel_transaction_send(self._h, _c_str(topic, "topic"), p, rs.array, rs.n, out))
        return _append_result(out)

    def send_offset(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Adds a group's offset to the open transaction (Kafka's sendOffsetsToTransaction)."""
        _check(lib.runnel_transaction_send_offset(self._h, _c_str(group, "group"), _c_str(topic, "topic"), partition, offset))

    def commit(self) -> None:
        _check(lib.runnel_transaction_commit(self._h))

    def abort(self) -> None:
        _check(lib.runnel_transaction_abort(self._h))


def open(
    path: Union[str, "os.PathLike[str]"],
    *,
    read_only: bool = False,
    shared: bool = False,
    background_maintenance: bool = True,
    max_open_segments: Optional[int] = None,
    default_topic_config: Optional[Mapping[str, object]] = None,
) -> Log:
    """Opens (creating it if needed) the data directory ``path``. With ``read_only``, takes no lock
    and writes nothing, while another process may write. With ``shared``, any number of processes
    open it this way and append, consume in one group and change topics at once (a
    ``multiprocessing`` pool of workers, say). A context manager closes it."""
    if read_only and shared:
        raise ValueError("a log is opened read_only or shared, not both")
    options: dict[str, object] = {}
    if read_only:
        options["mode"] = "read_only"
    if shared:
        options["mode"] = "shared"
    if not background_maintenance:
        options["background_maintenance"] = "false"
    if max_open_segments is not None:
        options["max_open_segments"] = max_open_segments
    options.update(default_topic_config or {})
    arr, n, _keep = _pairs(options, "option")
    out = ffi.new("runnel_log **")
    _check(lib.runnel_open(_c_str(os.fspath(path), "path"), arr, n, out))
    return Log(out[0])




# The chapter-4 clients (imported last: they build on the definitions above).
from .clients import (  # noqa: E402
    Consumer,
    ConsumerInterceptor,
    ConsumerRecord,
    Producer,
    ProducerInterceptor,
    ProducerRecord,
    RecordMetadata,
    TopicPartition,
)

__all__ += [
    "Producer",
    "Consumer",
    "ProducerRecord",
    "RecordMetadata",
    "ConsumerRecord",
    "TopicPartition",
    "ProducerInterceptor",
    "ConsumerInterceptor",
]
