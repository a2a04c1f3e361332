"""Property-based tests (hypothesis) of every parser and encoder: whatever comes in, the
result is a value or a ClientError with a documented code, and encodings round-trip."""

import logging
import re
import unicodedata
from urllib.parse import quote

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooms.core import commands, errors, metrics, names, protocol
from rooms.core.errors import ClientError
from rooms.core.groups import room_group
from rooms.core.limits import ConnectionCounter, TokenBucket
from rooms.core.logs import JsonFormatter

PARSE_CODES = {
    errors.NICKNAME_REQUIRED,
    errors.NICKNAME_INVALID,
    errors.ROOM_INVALID,
    errors.FORMAT_INVALID,
    errors.HISTORY_INVALID,
    errors.SINCE_INVALID,
    errors.BINARY_UNSUPPORTED,
    errors.MESSAGE_TOO_LONG,
    errors.JSON_INVALID,
    errors.COMMAND_INVALID,
    errors.COMMAND_UNKNOWN,
    errors.TEXT_INVALID,
}
FORBIDDEN = {"Cc", "Cn", "Cs", "Co", "Zl", "Zp"}
GROUP_NAME = re.compile(r"^[a-zA-Z0-9\-_.]{1,99}$")
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
INVISIBLE = set("\u00ad\u034f\u115f\u1160\u200b\u200c\u2060\u2800\u3164\ufe0e\ufeff\uffa0")
ZWJ, VS16 = "\u200d", "\ufe0f"
# Characters hypothesis would rarely draw by chance, mixed into the names it tries.
TRICKY = sorted(BIDI_CONTROLS | INVISIBLE | {ZWJ, VS16, "❤", "👩", "💻", "🏽", "\u20e3", "1", "/"})

examples = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
any_names = st.text(min_size=1, max_size=40).filter(
    lambda name: all(unicodedata.category(char) not in FORBIDDEN for char in name)
)
hostile_names = st.text(st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=120)


def shows_as_itself(name: str) -> bool:
    """What every accepted name must be: no bidi control, no invisible character outside
    an emoji, no refused category, and a letter or digit."""
    return (
        not any(char in BIDI_CONTROLS or char in INVISIBLE for char in name)
        and all(
            unicodedata.category(char) not in FORBIDDEN | {"Cf"} or char == ZWJ for char in name
        )
        and not any(char == VS16 and index == 0 for index, char in enumerate(name))
        and any(unicodedata.category(char)[0] in "LN" for char in name)
    )


@examples
@given(hostile_names)
def test_parse_room_returns_an_nfc_name_that_shows_as_itself_or_refuses_it(room):
    basic = 0 < len(unicodedata.normalize("NFC", room)) <= names.MAX_ROOM_NAME_LENGTH
    basic = basic and "/" not in room
    try:
        parsed = names.parse_room(room)
    except ClientError as error:
        assert error.code == errors.ROOM_INVALID
        assert error.close_code == errors.WS_4400_BAD_REQUEST
    else:
        assert basic and parsed == unicodedata.normalize("NFC", room)
        assert shows_as_itself(parsed)


@examples
@given(st.text(st.characters(categories=["L", "N", "Zs"]), max_size=100))
def test_a_room_name_of_letters_digits_and_spaces_is_accepted(room):
    if any(unicodedata.category(char)[0] in "LN" for char in room) and not set(room) & INVISIBLE:
        assert names.parse_room(room) == unicodedata.normalize("NFC", room)


@examples
@given(st.one_of(st.none(), hostile_names.map(lambda name: name[:40])))
def test_parse_nickname_returns_the_stripped_name_or_a_documented_error(raw):
    try:
        nickname = names.parse_nickname(raw)
    except ClientError as error:
        assert error.code in {errors.NICKNAME_REQUIRED, errors.NICKNAME_INVALID}
    else:
        assert nickname == raw.strip() and 0 < len(nickname) <= names.MAX_NICKNAME_LENGTH
        assert shows_as_itself(nickname)


@examples
@given(hostile_names.map(lambda name: name[:32]))
def test_a_nickname_key_is_stable_under_nfkc_nfd_and_case(nickname):
    key = names.nickname_key(nickname)
    for variant in (
        unicodedata.normalize("NFKC", nickname),
        unicodedata.normalize("NFD", nickname),
        nickname.casefold(),
        nickname.upper(),
        nickname.lower(),
    ):
        assert names.nickname_key(variant) == key, variant


@examples
@given(st.text(max_size=60), st.binary(max_size=200))
def test_parse_handshake_never_fails_other_than_with_a_client_error(room, query):
    try:
        handshake = protocol.parse_handshake(room, query)
    except ClientError as error:
        assert error.code in PARSE_CODES and error.close_code == errors.WS_4400_BAD_REQUEST
    else:
        assert handshake.room == unicodedata.normalize("NFC", room)
        assert handshake.format in protocol.FORMATS


def _accepted(parse, name: str) -> bool:
    try:
        parse(name)
    except ClientError:
        return False
    return True


@examples
@given(
    any_names.map(lambda name: unicodedata.normalize("NFC", name.replace("/", "_"))).filter(
        lambda name: _accepted(names.parse_room, name)
    ),
    any_names.map(str.strip).filter(lambda name: _accepted(names.parse_nickname, name)),
    st.sampled_from(protocol.FORMATS),
)
def test_a_well_formed_handshake_round_trips_through_the_query_string(room, nickname, fmt):
    query = f"nickname={quote(nickname, safe='')}&format={fmt}".encode()
    handshake = protocol.parse_handshake(room, query)
    assert (handshake.room, handshake.nickname, handshake.format) == (room, nickname, fmt)


@examples
@given(
    st.one_of(st.none(), st.text(max_size=300)),
    st.one_of(st.none(), st.binary(max_size=50)),
    st.sampled_from(protocol.FORMATS),
)
def test_parse_message_returns_text_or_who_or_a_non_fatal_documented_error(text, data, fmt):
    try:
        result = commands.parse_message(text, data, fmt, 100)
    except ClientError as error:
        assert error.code in PARSE_CODES and error.close_code is None
    else:
        assert result is commands.WHO or (isinstance(result, str) and len(result) <= 100)


def _has_control(text: str) -> bool:
    return any(
        (unicodedata.category(char) == "Cc" and char not in "\t\n") or char in "\u2028\u2029"
        for char in text
    )


@examples
@given(st.text(max_size=200))
def test_json_message_command_round_trips_any_text_without_control_characters(text):
    frame = orjson.dumps({"type": "message", "text": text}).decode()
    try:
        assert commands.parse_message(frame, None, protocol.JSON, 1000) == text
    except ClientError as error:
        assert _has_control(text) and error.code == errors.TEXT_INVALID
    else:
        assert not _has_control(text)


@examples
@given(st.text(max_size=200).filter(lambda text: not text.startswith("/")))
def test_text_frames_are_relayed_verbatim_unless_they_hold_a_control_character(text):
    try:
        assert commands.parse_message(text, None, protocol.TEXT, 1000) == text
    except ClientError as error:
        assert _has_control(text) and error.code == errors.TEXT_INVALID
        assert error.close_code is None
    else:
        assert not _has_control(text)


@examples
@given(any_names, any_names, st.text(max_size=200), st.integers(0, 2**53), st.integers(0, 2**45))
def test_room_events_encode_to_both_formats_losslessly(room, nickname, text, message_id, ts):
    frames = protocol.message(room, nickname, text, message_id, ts)
    assert frames[protocol.TEXT] == f"{nickname}: {text}"
    assert orjson.loads(frames[protocol.JSON]) == {
        "type": "message",
        "id": message_id,
        "room": room,
        "nickname": nickname,
        "text": text,
        "ts": ts,
    }
    for event, kind in ((protocol.joined, "join"), (protocol.left, "leave")):
        encoded = orjson.loads(event(room, nickname, ts)[protocol.JSON])
        assert encoded == {"type": kind, "room": room, "nickname": nickname, "ts": ts}


@examples
@given(
    st.sampled_from(sorted(PARSE_CODES)),
    st.text(max_size=100),
    st.one_of(st.none(), st.integers(4000, 4999)),
)
def test_error_frames_carry_code_message_and_close_in_both_formats(code, message, close):
    error = ClientError(code, message, close)
    assert protocol.error(error, protocol.TEXT) == f"error {code}: {message}"
    assert orjson.loads(protocol.error(error, protocol.JSON)) == {
        "type": "error",
        "code": code,
        "message": message,
        "close": close,
    }


@examples
@given(st.lists(st.text(min_size=1, max_size=100), min_size=2, max_size=8, unique=True))
def test_room_groups_are_valid_layer_names_and_distinct_rooms_never_share_one(rooms):
    groups = [room_group(room) for room in rooms]
    assert all(GROUP_NAME.match(group) for group in groups)
    assert len(set(groups)) == len(rooms)


@examples
@given(
    st.floats(0.1, 100),
    st.floats(1, 50),
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=200),
)
def test_token_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(rate, burst, steps):
    bucket = TokenBucket(rate, burst)
    now, allowed = 1000.0, 0
    start = now
    for step in steps:
        now += step
        allowed += bucket.take(now)
    assert allowed <= burst + rate * (now - start) + 1e-6


@examples
@given(st.lists(st.tuples(st.booleans(), st.sampled_from("abc")), max_size=100))
def test_connection_counts_match_acquires_minus_releases(operations):
    counter, open_ = ConnectionCounter(), {"a": 0, "b": 0, "c": 0}
    for acquire, group in operations:
        if acquire:
            counter.acquire(group, max_total=0, max_per_group=0)
            open_[group] += 1
        elif open_[group]:
            counter.release(group)
            open_[group] -= 1
    assert counter.total == sum(open_.values())
    assert counter.rooms == sum(1 for count in open_.values() if count)


SAMPLE = re.compile(r'^[a-z_]+(\{[a-z]+="(?:[^"\\]|\\.)*"\})? \S+$')


@examples
@given(
    st.lists(st.floats(0, 10, allow_nan=False), max_size=50),
    st.lists(st.text(max_size=20), max_size=5),
)
def test_metrics_render_valid_prometheus_text_with_cumulative_buckets(latencies, codes):
    state = metrics.Metrics()
    for latency in latencies:
        state.latency.observe(latency)
    for code in codes:
        state.errors[code] += 1
    saved, metrics.metrics = metrics.metrics, state
    try:
        body = metrics.render(connections=3, rooms=2, dropped=1, pending=4, pending_bytes=5)
    finally:
        metrics.metrics = saved
    lines = [line for line in body.rstrip("\n").split("\n") if not line.startswith("#")]
    assert all(SAMPLE.match(line) for line in lines), lines
    buckets = [int(line.split()[-1]) for line in lines if "_bucket{" in line]
    assert buckets == sorted(buckets) and buckets[-1] == len(latencies)


@examples
@given(any_names, any_names, st.text(max_size=100))
def test_json_log_lines_are_one_json_object_with_room_and_nickname(room, nickname, message):
    record = logging.LogRecord("rooms", logging.INFO, __file__, 1, "%s", (message,), None)
    record.room, record.nickname = room, nickname
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = orjson.loads(line)
    assert (entry["room"], entry["nickname"], entry["message"]) == (room, nickname, message)
