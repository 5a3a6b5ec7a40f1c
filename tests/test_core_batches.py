"""Pipelined requests answered as one Send (``next_event(now, room)``): the
batch is only how the replies are grouped, never what they say or in what
order, and it never grows past the room plus one reply (CH-ROBUST-1's bound
rests on that)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference_servers.core import Close, DictStore, Send, ServerConnection, StartTLS
from reference_servers.core.connection import Event
from tests.core_support import make_info

T0 = 1000.0
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def connect(protocol: str = "cloudhash", store: DictStore | None = None) -> ServerConnection:
    features = {"protocol": protocol, "features": frozenset()} if protocol == "resp" else {}
    return ServerConnection(
        make_info(**features), store if store is not None else DictStore(), T0, starttls_available=True
    )


def pull(conn: ServerConnection, now: float, room: int) -> list[Event]:
    events = []
    while (event := conn.next_event(now, room)) is not None:
        events.append(event)
    return events


def shape(events: list[Event]) -> list[object]:
    """The events with consecutive plain Sends merged: what a peer can tell apart."""
    merged: list[object] = []
    for event in events:
        if isinstance(event, Send) and not event.final and merged and isinstance(merged[-1], bytes):
            merged[-1] += event.data
        elif isinstance(event, Send) and not event.final:
            merged.append(event.data)
        else:
            merged.append(event)
    return merged


def test_pipelined_requests_with_room_come_as_one_send() -> None:
    conn = connect()
    conn.receive_data(b"SET k v\r\n" + b"GET k\r\n" * 15)
    events = pull(conn, T0, room=1 << 20)
    assert events == [Send(b"+OK\r\n" + b"$v\r\n" * 15)], f"expected one Send of 16 replies, got {events!r}"


def test_without_room_each_request_is_its_own_send() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\n" * 3)
    events = pull(conn, T0, room=0)
    assert events == [Send(b"+PONG\r\n")] * 3, f"expected three Sends, got {events!r}"


def test_a_batch_stops_at_the_room_plus_one_reply() -> None:
    store = DictStore()
    store.set(b"big", b"x" * 1000)
    conn = connect(store=store)
    conn.receive_data(b"GET big\r\n" * 10)
    reply = len(b"$" + b"x" * 1000 + b"\r\n")
    first = conn.next_event(T0, room=2500)
    assert isinstance(first, Send), f"expected a Send, got {first!r}"
    expected = 3 * reply  # 2 replies fill 2004 of the 2500 bytes of room; the third crosses it
    assert len(first.data) == expected, f"expected {expected} bytes (3 replies), got {len(first.data)}"
    rest = pull(conn, T0, room=2500)
    assert sum(len(event.data) for event in rest if isinstance(event, Send)) == 7 * reply


def test_a_sleep_ends_the_batch_and_what_follows_waits_for_it() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\nPING\r\nSLEEP 100\r\nPING\r\n")
    assert pull(conn, T0, room=1 << 20) == [Send(b"+PONG\r\n+PONG\r\n")]
    assert pull(conn, T0 + 0.05, room=1 << 20) == [], "expected nothing while the SLEEP runs"
    assert pull(conn, T0 + 0.1, room=1 << 20) == [Send(b"+OK\r\n+PONG\r\n")]


def test_starttls_and_quit_end_the_batch_in_order() -> None:
    conn = connect()
    conn.receive_data(b"PING\r\nSTARTTLS\r\nPING\r\n")
    events = pull(conn, T0, room=1 << 20)
    assert events == [Send(b"+PONG\r\n+OK\r\n"), StartTLS()], f"expected the replies, then StartTLS, got {events!r}"
    conn = connect()
    conn.receive_data(b"PING\r\nQUIT\r\nPING\r\n")
    events = pull(conn, T0, room=1 << 20)
    assert events == [Send(b"+PONG\r\n"), Send(b"+BYE\r\n", final=True), Close()], f"got {events!r}"


CLOUDHASH_REQUESTS = st.sampled_from(
    [b"PING\r\n", b"SET a 1\r\n", b"GET a\r\n", b"INCR a\r\n", b"DEL a\r\n", b"ECHO hi there\r\n", b"\r\n",
     b"NOPE\r\n", b"GET\r\n", b"SLEEP 0\r\n", b"SLEEP 20\r\n", b"STARTTLS\r\n", b"QUIT\r\n", b"FRAMED\r\n"]
)  # fmt: skip
RESP_REQUESTS = st.sampled_from(
    [b"*1\r\n$4\r\nPING\r\n", b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n", b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
     b"INCR a\r\n", b"*0\r\n", b"*2\r\n$4\r\nECHO\r\n$3\r\na\r\nb\r\n", b"*1\r\n$4\r\nNOPE\r\n", b"*1\r\n$3\r\nGET\r\n",
     b"*3\r\n$5\r\nBLPOP\r\n$1\r\nl\r\n$4\r\n0.02\r\n", b"QUIT\r\n", b"*1\r\n$3\r\nGET\r\n$"]
)  # fmt: skip


def replay(protocol: str, chunks: list[bytes], room: int, eof: bool) -> list[object]:
    """Feed ``chunks``, pulling with ``room`` after each, then let every timer run out."""
    conn = connect(protocol)
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events += pull(conn, T0, room)
    if eof:
        conn.receive_data(b"")
    now = T0
    for _ in range(100):
        events += pull(conn, now, room)
        deadline = conn.deadline()
        if deadline is None or deadline > T0 + 10:
            break
        now = max(now, deadline)
    return shape(events)


@FAST
@given(
    protocol_and_requests=st.one_of(
        st.tuples(st.just("cloudhash"), st.lists(CLOUDHASH_REQUESTS, min_size=1, max_size=12)),
        st.tuples(st.just("resp"), st.lists(RESP_REQUESTS, min_size=1, max_size=12)),
    ),
    room=st.sampled_from([1, 8, 64, 1 << 20]),
    eof=st.booleans(),
    data=st.data(),
)
def test_any_room_gives_the_bytes_and_events_of_one_request_at_a_time(
    protocol_and_requests: tuple[str, list[bytes]], room: int, eof: bool, data: st.DataObject
) -> None:
    protocol, requests = protocol_and_requests
    stream = b"".join(requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    one_at_a_time = replay(protocol, chunks, 0, eof)
    batched = replay(protocol, chunks, room, eof)
    assert batched == one_at_a_time, f"room {room}: expected {one_at_a_time!r}, got {batched!r}"
