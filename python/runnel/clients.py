"""The producer and consumer clients of chapter 4 of the Kafka primer, in the style of
confluent-kafka and kafka-python: a :class:`Producer` whose ``send`` returns a
``concurrent.futures.Future`` and takes a callback, and a :class:`Consumer` that subscribes,
polls, commits and hears of rebalances. Settings take Kafka's names, as a dict
(``{"linger.ms": 5}``) or keyword arguments (``linger_ms=5``).

    from runnel import Producer, Consumer

    with Producer(log, {"acks": "all", "linger.ms": 1}) as producer:
        producer.send("first", b"value", key=b"key", callback=lambda metadata, error: print(metadata, error))

    with Consumer(log, {"group.id": "test", "auto.offset.reset": "earliest"}) as consumer:
        consumer.subscribe(["first"])
        for record in consumer.poll(timeout=1.0):
            print(record.offset, record.key, record.value)
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from . import _check, _c_str, _pairs, _to_bytes, _Records, Error, InvalidArgumentError, Record, ANY_PARTITION, _ERRORS
from ._ffi import ffi, lib

if TYPE_CHECKING:
    from . import Log


@dataclass
class TopicPartition:
    """A topic and a partition; in a rebalance's ``on_assign``, set ``offset`` to start there."""

    topic: str
    partition: int
    offset: Optional[int] = None

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPartition) and (self.topic, self.partition) == (other.topic, other.partition)


@dataclass(frozen=True)
class RecordMetadata:
    """Where a sent record went."""

    topic: str
    partition: int
    offset: Optional[int]
    timestamp: int


@dataclass
class ProducerRecord:
    """What interceptors see and may change before a record is sent."""

    topic: str
    value: Any = None
    key: Any = None
    partition: Optional[int] = None
    timestamp: Optional[int] = None
    headers: Sequence[tuple[str, Optional[bytes]]] = ()


@dataclass(frozen=True)
class ConsumerRecord:
    """A consumed record (keys and values deserialized, bytes by default)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any


class ProducerInterceptor:
    """Sees every record a producer sends (Kafka's ProducerInterceptor); chain several in order.
    An exception in one is reported on stderr and the chain goes on, as Kafka logs it."""

    def on_send(self, record: ProducerRecord) -> ProducerRecord:
        return record

    def on_acknowledgement(self, metadata: Optional[RecordMetadata], error: Optional[Error]) -> None:
        pass

    def close(self) -> None:
        pass


class ConsumerInterceptor:
    """Sees what a consumer's poll returns and what it commits (Kafka's ConsumerInterceptor)."""

    def on_consume(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        return records

    def on_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        pass

    def close(self) -> None:
        pass


def _guarded(what: str, f: Callable[[], Any]) -> Any:
    try:
        return f()
    except Exception as e:  # an interceptor's failure must not break the client
        import sys

        print(f"runnel: {what} raised {e!r}; carrying on", file=sys.stderr)
        return None


def _settings(config: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in {**(config or {}), **{k.replace("_", "."): v for k, v in kwargs.items()}}.items():
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _error_of(code: int, message) -> Error:
    msg = "" if message == ffi.NULL else ffi.string(message).decode("utf-8", "replace")
    return _ERRORS.get(code, Error)(code, msg)


# One C callback for all sends: user_data is a handle to the Python-side completion.
@ffi.callback("void(void *, enum runnel_result, const struct runnel_record_metadata *, const char *)")
def _on_send(user_data, result, metadata, error):
    pending = ffi.from_handle(user_data)
    pending.producer._completed(pending, result, metadata, error)


# Every send still waiting for its C callback, with the handle C holds: kept here (not on the
# producer), so that nothing C may call back into is garbage-collected before it does.
_PENDING: set = set()
_PENDING_LOCK = threading.Lock()


def _finalize_producer(handle) -> None:
    """Closes (flushing) and frees a producer that was garbage-collected without close()."""
    lib.runnel_producer_close(handle, 0)
    lib.runnel_producer_free(handle)


class _Pending:
    __slots__ = ("producer", "future", "callback", "handle")

    def __init__(self, producer, future, callback):
        self.producer = producer
        self.future = future
        self.callback = callback
        self.handle = None


def _default_serialize(v: Any, what: str) -> Optional[bytes]:
    return _to_bytes(v, what)


class Producer:
    """Kafka's producer over a :class:`runnel.Log`. ``send`` returns at once with a Future; the
    library batches records per partition and appends them from a sender thread. Thread-safe. A
    context manager: leaving the block flushes and closes.

    ``config`` (or keyword arguments, ``_`` for ``.``) takes Kafka's names: acks, batch.size,
    linger.ms, buffer.memory, max.block.ms, max.request.size, enable.idempotence,
    transactional.id, transaction.timeout.ms, partitioner.class, client.id."""

    def __init__(
        self,
        log: "Log",
        config: Optional[Mapping[str, Any]] = None,
        *,
        key_serializer: Optional[Callable[[Any], Optional[bytes]]] = None,
        value_serializer: Optional[Callable[[Any], Optional[bytes]]] = None,
        interceptors: Iterable[ProducerInterceptor] = (),
        **kwargs: Any,
    ):
        arr, n, _keep = _pairs(_settings(config, kwargs), "config")
        out = ffi.new("runnel_producer **")
        _check(lib.runnel_producer_new(log._handle(), arr, n, out))
        self._h = out[0]
        self._log = log
        self._key_serializer = key_serializer or (lambda k: _default_serialize(k, "key"))
        self._value_serializer = value_serializer or (lambda v: _default_serialize(v, "value"))
        self._interceptors = list(interceptors)
        self._closed = False
        self._finalizer = weakref.finalize(self, _finalize_producer, self._h)

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        *,
        partition: Optional[int] = None,
        timestamp: Optional[int] = None,
        headers: Sequence[tuple[str, Optional[bytes]]] = (),
        callback: Optional[Callable[[Optional[RecordMetadata], Optional[Error]], None]] = None,
    ) -> "concurrent.futures.Future[RecordMetadata]":
        """Sends a record: returns a Future of its :class:`RecordMetadata` at once (``.result()``
        is the synchronous send of section 4.1.3). ``callback(metadata, error)`` runs once, on the
        producer's sender thread, in offset order per partition."""
        if self._closed:
            raise Error(lib.RUNNEL_CLOSED, "the producer is closed")
        record = ProducerRecord(topic, value, key, partition, timestamp, tuple(headers))
        for i in self._interceptors:
            changed = _guarded("a producer interceptor's on_send", lambda i=i: i.on_send(record))
            if changed is not None:
                record = changed
        topic_bytes = _c_str(record.topic, "topic")
        future: concurrent.futures.Future = concurrent.futures.Future()
        pending = _Pending(self, future, callback)
        pending.handle = ffi.new_handle(pending)
        with _PENDING_LOCK:
            _PENDING.add(pending)
        try:
            key = self._key_serializer(record.key) if record.key is not None else None
            value = self._value_serializer(record.value) if record.value is not None else None
            c = _Records([Record(value=value, key=key, headers=record.headers, timestamp=record.timestamp)])
        except Exception:
            with _PENDING_LOCK:
                _PENDING.discard(pending)
            raise
        p = ANY_PARTITION if record.partition is None else record.partition
        code = lib.runnel_producer_send(self._h, topic_bytes, p, c.array, _on_send, pending.handle)
        if code != lib.RUNNEL_OK and not future.done():
            # Refused before the callback could run (a bad argument): complete it here.
            self._completed(pending, code, ffi.NULL, lib.runnel_last_error())
        return future

    def _completed(self, pending: _Pending, result, metadata, error) -> None:
        if result == lib.RUNNEL_OK:
            m = RecordMetadata(
                ffi.string(metadata.topic).decode(), metadata.partition, None if metadata.offset < 0 else metadata.offset, metadata.timestamp
            )
            err = None
        else:
            m, err = None, _error_of(result, error)
        for i in self._interceptors:
            _guarded("a producer interceptor's on_acknowledgement", lambda i=i: i.on_acknowledgement(m, err))
        if pending.callback is not None:
            _guarded("a send callback", lambda: pending.callback(m, err))
        if not pending.future.done():
            if err is None:
                pending.future.set_result(m)
            else:
                pending.future.set_exception(err)
        with _PENDING_LOCK:
            _PENDING.discard(pending)

    def flush(self) -> None:
        """Waits until every record sent so far is complete, callbacks included."""
        _check(lib.runnel_producer_flush(self._h))

    def begin_transaction(self) -> None:
        """Opens a transaction (needs ``transactional.id``)."""
        _check(lib.runnel_producer_begin_transaction(self._h))

    def send_offsets_to_transaction(self, offsets: Mapping[TopicPartition, int], group: str) -> None:
        """Adds a group's offsets to the open transaction."""
        for tp, offset in offsets.items():
            _check(lib.runnel_producer_send_offset_to_transaction(self._h, _c_str(group, "group"), _c_str(tp.topic, "topic"), tp.partition, offset))

    def commit_transaction(self) -> None:
        """Flushes, then commits the open transaction."""
        _check(lib.runnel_producer_commit_transaction(self._h))

    def abort_transaction(self) -> None:
        """Flushes, then aborts the open transaction."""
        _check(lib.runnel_producer_abort_transaction(self._h))

    def close(self, timeout: Optional[float] = None) -> None:
        """Flushes (up to ``timeout`` seconds) and stops; runs the interceptors' ``close``."""
        if self._closed:
            return
        _check(lib.runnel_producer_close(self._h, 0 if timeout is None else max(1, int(timeout * 1000))))
        self._closed = True
        self._finalizer.detach()
        try:
            _check(lib.runnel_producer_free(self._h))
        finally:
            for i in self._interceptors:
                _guarded("a producer interceptor's close", i.close)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@ffi.callback("void(void *, int, const struct runnel_topic_partition *, size_t, int64_t *)")
def _on_rebalance(user_data, assigned, parts, n, seek_to):
    consumer = ffi.from_handle(user_data)
    consumer._rebalance(bool(assigned), parts, n, seek_to)


@ffi.callback("void(void *, enum runnel_result, const char *)")
def _on_commit(user_data, result, error):
    pending = ffi.from_handle(user_data)
    pending.consumer._commit_done(pending, result, error)


class _PendingCommit:
    __slots__ = ("consumer", "offsets", "callback", "handle")


class Consumer:
    """Kafka's consumer over a :class:`runnel.Log`: subscribe (or assign), poll, commit. For one
    thread at a time. A context manager: leaving the block closes it (committing with
    ``enable.auto.commit`` on, and leaving the group).

    ``config`` (or keyword arguments) takes Kafka's names: group.id, enable.auto.commit,
    auto.commit.interval.ms, auto.offset.reset, max.poll.records, isolation.level,
    session.timeout.ms, max.poll.interval.ms, partition.assignment.strategy, ..."""

    def __init__(
        self,
        log: "Log",
        config: Optional[Mapping[str, Any]] = None,
        *,
        key_deserializer: Optional[Callable[[bytes], Any]] = None,
        value_deserializer: Optional[Callable[[bytes], Any]] = None,
        interceptors: Iterable[ConsumerInterceptor] = (),
        **kwargs: Any,
    ):
        arr, n, _keep = _pairs(_settings(config, kwargs), "config")
        out = ffi.new("runnel_consumer **")
        _check(lib.runnel_consumer_new(log._handle(), arr, n, out))
        self._h = out[0]
        self._log = log
        self._key_deserializer = key_deserializer
        self._value_deserializer = value_deserializer
        self._interceptors = list(interceptors)
        self._on_assign: Optional[Callable] = None
        self._on_revoke: Optional[Callable] = None
        self._self_handle = ffi.new_handle(self)
        self._in_rebalance: Optional[dict] = None
        self._commits: set = set()
        self._closed = False

    def _handle(self):
        if self._closed:
            raise Error(lib.RUNNEL_CLOSED, "the consumer is closed")
        return self._h

    def subscribe(
        self,
        topics: Union[Sequence[str], str],
        on_assign: Optional[Callable[["Consumer", list[TopicPartition]], None]] = None,
        on_revoke: Optional[Callable[["Consumer", list[TopicPartition]], None]] = None,
    ) -> None:
        """Subscribes to topics (a list), or to a pattern (a str starting with ``^``, a regular
        expression matched against whole names). ``on_revoke(consumer, partitions)`` runs before a
        rebalance takes partitions away, ``on_assign(consumer, partitions)`` after it gives some;
        inside ``on_assign``, ``consumer.seek`` (or setting ``partition.offset``) sets where
        fetching starts, as section 4.2.3's custom offset store does. The consumer is inside its
        poll during both callbacks, so other calls on it (commit, position) are refused there:
        save progress to your own store in ``on_revoke``, or commit before polling again (with
        ``enable.auto.commit`` the revoked partitions are committed just before ``on_revoke``)."""
        self._on_assign, self._on_revoke = on_assign, on_revoke
        cb = _on_rebalance if (on_assign or on_revoke) else ffi.NULL
        ud = self._self_handle if cb != ffi.NULL else ffi.NULL
        if isinstance(topics, str):
            if not topics.startswith("^"):
                raise InvalidArgumentError(lib.RUNNEL_INVALID_ARGUMENT, "a pattern subscription starts with '^'; pass a list for topic names")
            _check(lib.runnel_consumer_subscribe_pattern(self._handle(), _c_str(topics[1:], "pattern"), cb, ud))
            return
        names = [ffi.new("char[]", _c_str(t, "topic")) for t in topics]
        arr = ffi.new("const char *[]", names) if names else ffi.NULL
        _check(lib.runnel_consumer_subscribe(self._handle(), arr, len(names), cb, ud))

    def _rebalance(self, assigned: bool, parts, n: int, seek_to) -> None:
        tps = [TopicPartition(ffi.string(parts[i].topic).decode(), parts[i].partition) for i in range(n)]
        self._in_rebalance = {}
        try:
            cb = self._on_assign if assigned else self._on_revoke
            if cb is not None:
                _guarded("a rebalance callback", lambda: cb(self, tps))
            if assigned:
                for i, tp in enumerate(tps):
                    at = self._in_rebalance.get((tp.topic, tp.partition), tp.offset)
                    if at is not None:
                        seek_to[i] = at
        finally:
            self._in_rebalance = None

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Assigns partitions by hand (no group membership)."""
        names = [ffi.new("char[]", _c_str(tp.topic, "topic")) for tp in partitions]
        arr = ffi.new("const char *[]", names) if names else ffi.NULL
        nums = ffi.new("uint32_t[]", [tp.partition for tp in partitions]) if partitions else ffi.NULL
        _check(lib.runnel_consumer_assign(self._handle(), arr, nums, len(partitions)))
        for tp in partitions:
            if tp.offset is not None:
                self.seek(tp, tp.offset)

    def poll(self, timeout: float = 1.0) -> list[ConsumerRecord]:
        """Returns as soon as records arrive, or an empty list after ``timeout`` seconds."""
        out = ffi.new("runnel_polled **")
        _check(lib.runnel_consumer_poll(self._handle(), max(0, int(timeout * 1000)), out))
        polled = out[0]
        try:
            r = ffi.new("runnel_consumer_record *")
            records = []
            topics: dict = {}
            for i in range(lib.runnel_polled_count(polled)):
                _check(lib.runnel_polled_get(polled, i, r))
                t = topics.get(r.topic)
                if t is None:
                    t = topics[r.topic] = ffi.string(r.topic).decode()
                v = r.record
                key = None if v.key == ffi.NULL else ffi.unpack(ffi.cast("char *", v.key), v.key_len)
                value = None if v.value == ffi.NULL else ffi.unpack(ffi.cast("char *", v.value), v.value_len)
                try:
                    if key is not None and self._key_deserializer is not None:
                        key = self._key_deserializer(key)
                    if value is not None and self._value_deserializer is not None:
                        value = self._value_deserializer(value)
                except Exception:
                    # Nothing of this poll is delivered: every partition goes back to its first
                    # record of it, so that the records are not skipped (or committed past).
                    firsts: dict = {}
                    for j in range(lib.runnel_polled_count(polled)):
                        _check(lib.runnel_polled_get(polled, j, r))
                        key_tp = (ffi.string(r.topic).decode(), r.partition)
                        firsts.setdefault(key_tp, r.record.offset)
                    for (topic, partition), offset in firsts.items():
                        _check(lib.runnel_consumer_seek(self._handle(), _c_str(topic, "topic"), partition, offset))
                    raise
                records.append(ConsumerRecord(t, r.partition, v.offset, v.timestamp, key, value))
        finally:
            lib.runnel_polled_free(polled)
        for i in self._interceptors:
            changed = _guarded("a consumer interceptor's on_consume", lambda i=i: i.on_consume(records))
            if changed is not None:
                records = changed
        return records

    def commit(self, offsets: Optional[Mapping[TopicPartition, int]] = None, *, asynchronous: bool = False,
               callback: Optional[Callable[[Optional[Error]], None]] = None) -> None:
        """Commits the positions of everything this consumer owns (``commitSync``), or
        ``offsets`` (each the next offset to consume). With ``asynchronous=True`` returns at once
        (``commitAsync``); ``callback(error)`` then runs in a later poll, commit or close."""
        if offsets is not None:
            for tp, offset in offsets.items():
                _check(lib.runnel_consumer_commit_offset(self._handle(), _c_str(tp.topic, "topic"), tp.partition, offset))
            self._notify_commit(offsets)
            return
        if asynchronous:
            pending = _PendingCommit()
            pending.consumer, pending.offsets, pending.callback = self, self._positions(), callback
            pending.handle = ffi.new_handle(pending)
            self._commits.add(pending)
            try:
                _check(lib.runnel_consumer_commit_async(self._handle(), _on_commit, pending.handle))
            except Exception:
                self._commits.discard(pending)
                raise
            return
        positions = self._positions()
        _check(lib.runnel_consumer_commit_sync(self._handle()))
        self._notify_commit(positions)

    def _positions(self) -> dict[TopicPartition, int]:
        return {tp: self.position(tp) for tp in self.assignment()}

    def _notify_commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for i in self._interceptors:
            _guarded("a consumer interceptor's on_commit", lambda i=i: i.on_commit(offsets))

    def _commit_done(self, pending: _PendingCommit, result, error) -> None:
        self._commits.discard(pending)
        err = None if result == lib.RUNNEL_OK else _error_of(result, error)
        if err is None:
            self._notify_commit(pending.offsets)
        if pending.callback is not None:
            _guarded("a commit callback", lambda: pending.callback(err))

    def committed(self, tp: TopicPartition) -> Optional[int]:
        """The group's committed offset for a partition, or None."""
        out = ffi.new("uint64_t *")
        r = _check(lib.runnel_consumer_committed(self._handle(), _c_str(tp.topic, "topic"), tp.partition, out))
        return None if r == lib.RUNNEL_DONE else out[0]

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record poll returns from an owned partition."""
        out = ffi.new("uint64_t *")
        _check(lib.runnel_consumer_position(self._handle(), _c_str(tp.topic, "topic"), tp.partition, out))
        return out[0]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Makes the next poll read ``tp`` from ``offset``."""
        if self._in_rebalance is not None:
            # Inside on_assign the consumer is busy polling: the seek is applied when it returns.
            self._in_rebalance[(tp.topic, tp.partition)] = offset
            return
        _check(lib.runnel_consumer_seek(self._handle(), _c_str(tp.topic, "topic"), tp.partition, offset))

    def seek_to_beginning(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            _check(lib.runnel_consumer_seek_to(self._handle(), _c_str(tp.topic, "topic"), tp.partition, 0))

    def seek_to_end(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            _check(lib.runnel_consumer_seek_to(self._handle(), _c_str(tp.topic, "topic"), tp.partition, 1))

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            _check(lib.runnel_consumer_pause(self._handle(), _c_str(tp.topic, "topic"), tp.partition, 1))

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            _check(lib.runnel_consumer_pause(self._handle(), _c_str(tp.topic, "topic"), tp.partition, 0))

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer owns now."""
        out = ffi.new("runnel_string_list **")
        _check(lib.runnel_consumer_assignment(self._handle(), out))
        lst = out[0]
        try:
            result = []
            for i in range(lib.runnel_string_list_len(lst)):
                name = ffi.string(lib.runnel_string_list_get(lst, i)).decode()
                topic, _, p = name.rpartition("-")
                result.append(TopicPartition(topic, int(p)))
            return result
        finally:
            lib.runnel_string_list_free(lst)

    def close(self) -> None:
        """Commits (with auto-commit on), leaves the group, runs pending commit callbacks and the
        interceptors' ``close``. Idempotent."""
        if self._closed:
            return
        try:
            _check(lib.runnel_consumer_close(self._h))
        finally:
            self._closed = True
            _check(lib.runnel_consumer_free(self._h))
            for i in self._interceptors:
                _guarded("a consumer interceptor's close", i.close)

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        """Polls forever, yielding records (``for record in consumer``)."""
        while True:
            yield from self.poll(1.0)
