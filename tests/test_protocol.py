"""The wire protocol's pure functions, table by table."""

from pathlib import Path

import orjson
import pytest

from rooms.core import commands, errors, names, protocol
from rooms.core.errors import ClientError

MAX = 4096
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("room", "query", "expected"),
    [
        ("Room1", b"nickname=Nick", protocol.Handshake("Room1", "Nick", "text")),
        ("Room1", b"nickname=Nick&format=json", protocol.Handshake("Room1", "Nick", "json")),
        ("Room1", b"nickname=%20Nick%20", protocol.Handshake("Room1", "Nick", "text")),
        ("Кухня 🍳", b"nickname=%C3%A9lodie", protocol.Handshake("Кухня 🍳", "élodie", "text")),
        ("r" * 100, b"nickname=" + b"n" * 32, protocol.Handshake("r" * 100, "n" * 32, "text")),
        ("R", b"nickname=N&history=0", protocol.Handshake("R", "N", "text", history=0)),
        ("R", b"nickname=N&history=20", protocol.Handshake("R", "N", "text", history=20)),
        ("R", b"nickname=N&format=json&since=41", protocol.Handshake("R", "N", "json", since=41)),
    ],
)
def test_valid_handshakes_are_parsed(room, query, expected):
    assert protocol.parse_handshake(room, query) == expected


@pytest.mark.parametrize(
    ("room", "query", "code"),
    [
        ("Room1", b"", errors.NICKNAME_REQUIRED),
        ("Room1", b"nickname=", errors.NICKNAME_REQUIRED),
        ("Room1", b"nickname=%20%20", errors.NICKNAME_REQUIRED),
        ("Room1", b"nickname=" + b"n" * 33, errors.NICKNAME_INVALID),
        ("Room1", b"nickname=Ni%00ck", errors.NICKNAME_INVALID),
        ("Room1", b"nickname=Ni%0Ack", errors.NICKNAME_INVALID),
        ("Room1", b"nickname=Ni%E2%80%A8ck", errors.NICKNAME_INVALID),
        ("", b"nickname=Nick", errors.ROOM_INVALID),
        ("r" * 101, b"nickname=Nick", errors.ROOM_INVALID),
        ("a/b", b"nickname=Nick", errors.ROOM_INVALID),
        ("tab\there", b"nickname=Nick", errors.ROOM_INVALID),
        ("Room1", b"nickname=Nick&format=xml", errors.FORMAT_INVALID),
        ("Room1", b"nickname=Nick&history=-1", errors.HISTORY_INVALID),
        ("Room1", b"nickname=Nick&history=ten", errors.HISTORY_INVALID),
        ("Room1", b"nickname=Nick&history=", errors.HISTORY_INVALID),
        ("Room1", b"nickname=Nick&since=1.5", errors.SINCE_INVALID),
        ("Room1", b"nickname=Nick&since=%D9%A3", errors.SINCE_INVALID),
        ("Room1", b"nickname=Nick&since=" + b"9" * 19, errors.SINCE_INVALID),
    ],
)
def test_invalid_handshakes_raise_fatal_errors(room, query, code):
    with pytest.raises(ClientError) as caught:
        protocol.parse_handshake(room, query)
    assert caught.value.code == code
    assert caught.value.close_code == errors.WS_4400_BAD_REQUEST


@pytest.mark.parametrize(
    ("text", "data", "fmt", "expected"),
    [
        ("hello", None, "text", "hello"),
        ("", None, "text", ""),
        ('{"type": "message"}', None, "text", '{"type": "message"}'),
        ("x" * MAX, None, "text", "x" * MAX),
        ('{"type": "message", "text": "hi"}', None, "json", "hi"),
        ('{"type": "message", "text": "<b>é</b>"}', None, "json", "<b>é</b>"),
    ],
)
def test_valid_frames_yield_their_text(text, data, fmt, expected):
    assert commands.parse_message(text, data, fmt, MAX) == expected


@pytest.mark.parametrize(
    ("text", "data", "fmt", "code"),
    [
        (None, b"\x00\xff", "text", errors.BINARY_UNSUPPORTED),
        (None, b"{}", "json", errors.BINARY_UNSUPPORTED),
        ("x" * (MAX + 1), None, "text", errors.MESSAGE_TOO_LONG),
        ("not json", None, "json", errors.JSON_INVALID),
        ('{"type": "message", "text": 5}', None, "json", errors.COMMAND_INVALID),
        ('{"type": "shout", "text": "hi"}', None, "json", errors.COMMAND_INVALID),
        ('["message", "hi"]', None, "json", errors.COMMAND_INVALID),
        (
            '{"type": "message", "text": "' + "x" * (MAX + 1) + '"}',
            None,
            "json",
            errors.MESSAGE_TOO_LONG,
        ),
    ],
)
def test_invalid_frames_raise_non_fatal_errors(text, data, fmt, code):
    with pytest.raises(ClientError) as caught:
        commands.parse_message(text, data, fmt, MAX)
    assert caught.value.code == code
    assert caught.value.close_code is None


CONTROL_TEXTS = [
    ("NUL", "bad\x00char", "U+0000"),
    ("escape", "\x1b[2Jcleared", "U+001B"),
    ("carriage return", "line\r\nbreak", "U+000D"),
    ("vertical tab", "a\x0bb", "U+000B"),
    ("DEL", "x\x7f", "U+007F"),
    ("C1 next line", "a\x85b", "U+0085"),
    ("C1 CSI", "\x9b31m", "U+009B"),
    ("line separator", "a\u2028b", "U+2028"),
    ("paragraph separator", "a\u2029b", "U+2029"),
]


@pytest.mark.parametrize("fmt", protocol.FORMATS)
@pytest.mark.parametrize(
    ("text", "found"), [case[1:] for case in CONTROL_TEXTS], ids=[case[0] for case in CONTROL_TEXTS]
)
def test_control_characters_in_message_text_are_refused_without_closing(text, found, fmt):
    frame = orjson.dumps({"type": "message", "text": text}).decode() if fmt == "json" else text
    with pytest.raises(ClientError) as caught:
        commands.parse_message(frame, None, fmt, MAX)
    assert caught.value.code == errors.TEXT_INVALID
    assert caught.value.close_code is None
    assert f"(found {found})" in caught.value.message


@pytest.mark.parametrize("fmt", protocol.FORMATS)
@pytest.mark.parametrize(
    "text",
    ["tab\there", "two\nlines", "\t\n", "emoji 👩‍💻 ❤️", "\u200bzero width", "\u202ertl"],
    ids=["tab", "newline", "only tab and newline", "emoji", "zero width space", "bidi override"],
)
def test_tab_newline_and_other_format_characters_pass_in_message_text(text, fmt):
    frame = orjson.dumps({"type": "message", "text": text}).decode() if fmt == "json" else text
    assert commands.parse_message(frame, None, fmt, MAX) == text


def test_events_are_encoded_as_the_seed_in_text():
    assert protocol.joined("Room1", "Nick", 1)["text"] == "Nick joined Room1"
    assert protocol.message("Room1", "Nick", "hi", 7, 1)["text"] == "Nick: hi"
    assert protocol.left("Room1", "Nick", 1)["text"] == "Nick left the room"


def test_events_are_encoded_as_json_objects():
    assert orjson.loads(protocol.joined("R", "N", 5)["json"]) == {
        "type": "join",
        "room": "R",
        "nickname": "N",
        "ts": 5,
    }
    assert orjson.loads(protocol.left("R", "N", 5)["json"]) == {
        "type": "leave",
        "room": "R",
        "nickname": "N",
        "ts": 5,
    }
    assert orjson.loads(protocol.message("R", "N", "<i>hi</i>", 3, 5)["json"]) == {
        "type": "message",
        "id": 3,
        "room": "R",
        "nickname": "N",
        "text": "<i>hi</i>",
        "ts": 5,
    }
    assert orjson.loads(protocol.welcome("R", "N", ["A", "N"], 7, 5)) == {
        "type": "welcome",
        "room": "R",
        "nickname": "N",
        "members": ["A", "N"],
        "last_id": 7,
        "ts": 5,
    }


@pytest.mark.parametrize(
    ("error", "fmt", "expected"),
    [
        (ClientError("X_Y", "Why."), "text", "error X_Y: Why."),
        (ClientError("X_Y", "Why.", 4400), "text", "error X_Y: Why."),
        (
            ClientError("X_Y", "Why."),
            "json",
            {"type": "error", "code": "X_Y", "message": "Why.", "close": None},
        ),
        (
            ClientError("X_Y", "Why.", 4400),
            "json",
            {"type": "error", "code": "X_Y", "message": "Why.", "close": 4400},
        ),
    ],
)
def test_errors_become_one_frame(error, fmt, expected):
    frame = protocol.error(error, fmt)
    assert (orjson.loads(frame) if fmt == "json" else frame) == expected


@pytest.mark.parametrize(
    ("frame", "fmt", "expected"),
    [
        ("/who", "text", commands.WHO),
        ("/who  ", "text", commands.WHO),
        ("//who", "text", "/who"),
        ("//", "text", "/"),
        ("/", "text", None),
        ("a /who", "text", "a /who"),
        ('{"type": "who"}', "json", commands.WHO),
        ('{"type": "message", "text": "/who"}', "json", "/who"),
    ],
)
def test_commands_are_parsed_and_a_double_slash_sends_a_slash(frame, fmt, expected):
    if expected is None:
        with pytest.raises(ClientError) as caught:
            commands.parse_message(frame, None, fmt, MAX)
        assert caught.value.code == errors.COMMAND_UNKNOWN
        assert caught.value.close_code is None
    else:
        assert commands.parse_message(frame, None, fmt, MAX) == expected


def test_unknown_text_commands_are_non_fatal_errors():
    with pytest.raises(ClientError) as caught:
        commands.parse_message("/nick Bob", None, "text", MAX)
    assert caught.value.code == errors.COMMAND_UNKNOWN
    assert caught.value.close_code is None
    assert "'/nick'" in caught.value.message


def test_message_parts_fill_in_to_the_same_frame_as_message():
    text_frame, (head, middle, tail) = protocol.message_parts("R é", 'N"', "hi\n")
    frames = protocol.message("R é", 'N"', "hi\n", 42, 1795622892640)
    assert text_frame == frames["text"] == 'N": hi\n'
    assert f"{head}42{middle}1795622892640{tail}" == frames["json"]
    assert orjson.loads(frames["json"]) == {
        "type": "message",
        "id": 42,
        "room": "R é",
        "nickname": 'N"',
        "text": "hi\n",
        "ts": 1795622892640,
    }


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("text", "N: hi"), ("json", protocol.message("R", "N", "hi", 3, 5)["json"])],
)
def test_replayed_messages_match_the_live_frames(fmt, expected):
    assert protocol.replayed(protocol.message("R", "N", "hi", 3, 5)["json"], fmt) == expected


@pytest.mark.parametrize(
    ("fmt", "members", "gap"),
    [
        ("text", "Members of R (2): A, b", "Messages 3 to 9 of R are no longer available"),
        (
            "json",
            {"type": "members", "room": "R", "members": ["A", "b"]},
            {"type": "gap", "room": "R", "from": 3, "to": 9},
        ),
    ],
)
def test_member_lists_and_gaps_are_encoded_per_format(fmt, members, gap):
    decode = orjson.loads if fmt == "json" else str
    assert decode(protocol.members("R", ["A", "b"], fmt)) == members
    assert decode(protocol.gap("R", 3, 9, fmt)) == gap


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", "text"),
        (b"format=json", "json"),
        (b"format=xml", "text"),
        (b"nickname=&format=json", "json"),
    ],
)
def test_the_error_format_follows_the_request_even_when_it_is_invalid(query, expected):
    assert protocol.requested_format(query) == expected


def _cases(table: list[tuple]) -> dict:
    """parametrize arguments for a table whose first column is each case's id."""
    return {"argvalues": [case[1:] for case in table], "ids": [case[0] for case in table]}


VALID_NICKNAMES = [
    ("ascii", "Alice", "Alice"),
    ("surrounding whitespace dropped", "  Alice \t", "Alice"),
    ("inner space", "Alex 2", "Alex 2"),
    ("accents, as typed (NFD kept)", "Zoe\u0308", "Zoe\u0308"),
    ("cyrillic", "Élodie Кузнецова", "Élodie Кузнецова"),
    ("right to left script", "דנה", "דנה"),
    ("digits only", "42", "42"),
    ("emoji ZWJ sequence after a name", "Ana👩\u200d💻", "Ana👩\u200d💻"),
    ("VS16 on a heart", "Bob ❤\ufe0f", "Bob ❤\ufe0f"),
    ("flag of many ZWJ and VS16", "Kim 🏳\ufe0f\u200d🌈", "Kim 🏳\ufe0f\u200d🌈"),
    ("skin tone then ZWJ", "Lee 👨🏽\u200d🚀", "Lee 👨🏽\u200d🚀"),
    ("keycap", "1\ufe0f\u20e3 Nick", "1\ufe0f\u20e3 Nick"),
    ("combining marks", "नमस्ते", "नमस्ते"),
    ("fullwidth", "Ａｌｉｃｅ", "Ａｌｉｃｅ"),
]


@pytest.mark.parametrize(("raw", "expected"), **_cases(VALID_NICKNAMES))
def test_valid_nicknames_are_kept_as_typed(raw, expected):
    assert names.parse_nickname(raw) == expected


HIDDEN = "Nicknames cannot contain invisible, control, unassigned or direction-changing characters"
INVALID_NICKNAMES = [
    ("right-to-left override", "\u202enimda", f"{HIDDEN} (found U+202E)."),
    ("left-to-right override", "Bob\u202d", f"{HIDDEN} (found U+202D)."),
    ("right-to-left mark", "\u200fBob", f"{HIDDEN} (found U+200F)."),
    ("arabic letter mark", "Bob\u061c", f"{HIDDEN} (found U+061C)."),
    ("isolate", "\u2066Bob\u2069", f"{HIDDEN} (found U+2066)."),
    ("zero-width space alone", "\u200b", f"{HIDDEN} (found U+200B)."),
    ("zero-width space inside", "Al\u200bice", f"{HIDDEN} (found U+200B)."),
    ("zero-width non-joiner", "Al\u200cice", f"{HIDDEN} (found U+200C)."),
    ("word joiner", "Alice\u2060", f"{HIDDEN} (found U+2060)."),
    ("byte order mark", "\ufeffAlice", f"{HIDDEN} (found U+FEFF)."),
    ("soft hyphen", "Al\u00adice", f"{HIDDEN} (found U+00AD)."),
    ("combining grapheme joiner", "A\u034flice", f"{HIDDEN} (found U+034F)."),
    ("hangul filler, a letter", "\u3164", f"{HIDDEN} (found U+3164)."),
    ("hangul choseong filler", "\u115f\u1160", f"{HIDDEN} (found U+115F)."),
    ("halfwidth hangul filler", "Bob\uffa0", f"{HIDDEN} (found U+FFA0)."),
    ("braille blank", "\u2800", f"{HIDDEN} (found U+2800)."),
    ("braille blank beside a name", "Bob\u2800", f"{HIDDEN} (found U+2800)."),
    ("VS16 after a letter", "Alice\ufe0f", f"{HIDDEN} (found U+FE0F)."),
    ("VS15", "❤\ufe0e Bob", f"{HIDDEN} (found U+FE0E)."),
    ("VS16 twice", "❤\ufe0f\ufe0f Bob", f"{HIDDEN} (found U+FE0F)."),
    ("VS16 on a digit without keycap", "Bob1\ufe0f", f"{HIDDEN} (found U+FE0F)."),
    ("variation selector supplement", "Bob\U000e0100", f"{HIDDEN} (found U+E0100)."),
    ("ZWJ between letters", "Al\u200dice", f"{HIDDEN} (found U+200D)."),
    ("ZWJ at the end", "Bob👩\u200d", f"{HIDDEN} (found U+200D)."),
    ("ZWJ at the start", "\u200dBob", f"{HIDDEN} (found U+200D)."),
    ("ZWJ twice", "Bob👩\u200d\u200d💻", f"{HIDDEN} (found U+200D)."),
    ("tag characters", "Bob\U000e0041\U000e007f", f"{HIDDEN} (found U+E0041)."),
    ("interlinear annotation, format", "Bob\ufff9x", f"{HIDDEN} (found U+FFF9)."),
    ("NUL", "Ni\x00ck", f"{HIDDEN} (found U+0000)."),
    ("escape", "\x1b[31mNick", f"{HIDDEN} (found U+001B)."),
    ("C1 control", "Ni\x9bck", f"{HIDDEN} (found U+009B)."),
    ("line separator", "Ni\u2028ck", f"{HIDDEN} (found U+2028)."),
    ("unassigned", "Bob\u0378", f"{HIDDEN} (found U+0378)."),
    ("private use", "Bob\ue000", f"{HIDDEN} (found U+E000)."),
    ("emoji only", "👩\u200d💻", "Nicknames need at least one letter or digit."),
    ("heart only", "❤\ufe0f", "Nicknames need at least one letter or digit."),
    ("punctuation only", "...", "Nicknames need at least one letter or digit."),
    ("inner spaces only", "-\u3000-", "Nicknames need at least one letter or digit."),
    ("too long", "n" * 33, "Nicknames are 1 to 32 printable characters."),
]


@pytest.mark.parametrize(("raw", "message"), **_cases(INVALID_NICKNAMES))
def test_invisible_controlling_or_letterless_nicknames_are_refused(raw, message):
    with pytest.raises(ClientError) as caught:
        names.parse_nickname(raw)
    assert (caught.value.code, caught.value.message) == (errors.NICKNAME_INVALID, message)
    assert caught.value.close_code == errors.WS_4400_BAD_REQUEST


VALID_ROOMS = [
    ("ascii", "Room1", "Room1"),
    ("case is kept: another room", "room1", "room1"),
    ("unicode and emoji", "Кухня 🍳", "Кухня 🍳"),
    ("NFD becomes NFC", "Cafe\u0301", "Café"),
    ("NFC stays", "Café", "Café"),
    ("compatibility characters stay", "Ｒｏｏｍ", "Ｒｏｏｍ"),
    ("emoji ZWJ sequence", "Dev 👩\u200d💻", "Dev 👩\u200d💻"),
    ("spaces around are kept", " Room ", " Room "),
    ("100 characters after NFC", "e\u0301" * 100, "é" * 100),
]


@pytest.mark.parametrize(("raw", "expected"), **_cases(VALID_ROOMS))
def test_valid_room_names_are_returned_in_nfc(raw, expected):
    assert names.parse_room(raw) == expected


HIDDEN_ROOM = (
    "Room names cannot contain invisible, control, unassigned or direction-changing characters"
)
INVALID_ROOMS = [
    ("right-to-left override", "\u202emoor", f"{HIDDEN_ROOM} (found U+202E)."),
    ("isolate", "Room\u2067", f"{HIDDEN_ROOM} (found U+2067)."),
    ("zero-width space", "Ro\u200bom", f"{HIDDEN_ROOM} (found U+200B)."),
    ("hangul filler", "\u3164", f"{HIDDEN_ROOM} (found U+3164)."),
    ("braille blank", "\u2800\u2800", f"{HIDDEN_ROOM} (found U+2800)."),
    ("ZWJ between letters", "Ro\u200dom", f"{HIDDEN_ROOM} (found U+200D)."),
    ("tab", "tab\there", f"{HIDDEN_ROOM} (found U+0009)."),
    ("NUL", "Room\x00", f"{HIDDEN_ROOM} (found U+0000)."),
    ("symbols only", "🍳🍳", "Room names need at least one letter or digit."),
    ("spaces only", "   ", "Room names need at least one letter or digit."),
    ("empty", "", "Room names are 1 to 100 printable characters, without '/'."),
    ("slash", "a/b", "Room names are 1 to 100 printable characters, without '/'."),
    ("over 100", "r" * 101, "Room names are 1 to 100 printable characters, without '/'."),
]


@pytest.mark.parametrize(("raw", "message"), **_cases(INVALID_ROOMS))
def test_invisible_controlling_or_letterless_room_names_are_refused(raw, message):
    with pytest.raises(ClientError) as caught:
        names.parse_room(raw)
    assert (caught.value.code, caught.value.message) == (errors.ROOM_INVALID, message)
    assert caught.value.close_code == errors.WS_4400_BAD_REQUEST


COLLIDING = [
    ("case", "Alice", "alice"),
    ("upper case", "Alice", "ALICE"),
    ("cyrillic capital A", "Alice", "\u0410lice"),
    ("cyrillic a, i, e and c", "alice", "\u0430l\u0456\u0441\u0435"),
    ("greek omicron", "Bob", "B\u03bfb"),
    ("NFD", "Zoë", "Zoe\u0308"),
    ("fullwidth", "Alice", "Ａｌｉｃｅ"),
    ("mathematical bold", "Alice", "𝐀𝐥𝐢𝐜𝐞"),
    ("circled letters", "AB", "ⒶⒷ"),
    ("sharp s", "Straße", "STRASSE"),
    ("digit one and small L", "Nick1", "Nickl"),
    ("digit zero and o", "B0b", "Bob"),
    ("rn and m", "mary", "rnary"),
    ("ideographic space", "Alex 2", "Alex\u30002"),
    ("no-break space", "Alex 2", "Alex\u00a02"),
    ("emoji with and without ZWJ", "Ana👩\u200d💻", "Ana👩💻"),
    ("heart with and without VS16", "Bob ❤\ufe0f", "Bob ❤"),
    ("kelvin sign", "Kim", "\u212aim"),
]


@pytest.mark.parametrize(("one", "other"), **_cases(COLLIDING))
def test_look_alike_nicknames_share_a_key(one, other):
    assert names.nickname_key(one) == names.nickname_key(other)


DISTINCT = [
    ("different names", "Alice", "Alicia"),
    ("a letter more", "Bob", "Bobb"),
    ("accent", "Zoe", "Zoë"),
    ("spacing", "Alex 2", "Alex2"),
    ("digit", "Nick1", "Nick2"),
    ("different emoji", "Ana👩\u200d💻", "Ana👨\u200d💻"),
    ("different script, different letters", "Борис", "Boris"),
    ("greek", "Αλίκη", "Alice"),
    # Case is folded before look-alikes are: "Ian" must meet "ian", which differs from "lan".
    ("capital I and small L", "Ian", "lan"),
]


@pytest.mark.parametrize(("one", "other"), **_cases(DISTINCT))
def test_different_nicknames_keep_different_keys(one, other):
    assert names.nickname_key(one) != names.nickname_key(other)


M = commands.Moderate

MODERATOR_COMMANDS = [
    ("kick", "/kick Nick", "text", M("kick", "Nick")),
    (
        "kick with a reason",
        "/kick Nick spam, again ",
        "text",
        M("kick", "Nick", reason="spam, again"),
    ),
    ("ban, default length", "/ban Nick", "text", M("ban", "Nick", seconds=3600)),
    ("ban for seconds", "/ban Nick 600", "text", M("ban", "Nick", seconds=600)),
    ("ban with a reason", "/ban Nick 60 flood", "text", M("ban", "Nick", 60, "flood")),
    ("ban with a reason only", "/ban Nick flood", "text", M("ban", "Nick", 3600, "flood")),
    ("mute, default length", "/mute Nick", "text", M("mute", "Nick", seconds=600)),
    ("mute for seconds", "/mute  Nick  60", "text", M("mute", "Nick", seconds=60)),
    ("unban", "/unban Nick", "text", M("unban", "Nick")),
    ("unmute", "/unmute Nick", "text", M("unmute", "Nick")),
    ("delete", "/delete 42", "text", M("delete", id=42)),
    ("json kick", '{"type": "kick", "nickname": "A b"}', "json", M("kick", "A b")),
    (
        "json ban",
        '{"type": "ban", "nickname": "Nick", "seconds": 5, "reason": "r"}',
        "json",
        M("ban", "Nick", 5, "r"),
    ),
    ("json mute", '{"type": "mute", "nickname": "Nick"}', "json", M("mute", "Nick", 600)),
    ("json unmute", '{"type": "unmute", "nickname": "Nick"}', "json", M("unmute", "Nick")),
    ("json delete", '{"type": "delete", "id": 7}', "json", M("delete", id=7)),
]


@pytest.mark.parametrize(("frame", "fmt", "expected"), **_cases(MODERATOR_COMMANDS))
def test_moderator_commands_are_parsed_in_both_formats(frame, fmt, expected):
    assert commands.parse_message(frame, None, fmt, MAX) == expected


BAD_MODERATOR_COMMANDS = [
    ("no nickname", "/kick", "text"),
    ("blank nickname", "/kick   ", "text"),
    ("nickname too long", "/kick " + "n" * 65, "text"),
    ("zero seconds", "/mute Nick 0", "text"),
    ("a year and more", f"/ban Nick {commands.MAX_SECONDS + 1}", "text"),
    ("huge seconds", "/ban Nick " + "9" * 40, "text"),
    ("a mute takes no reason", "/mute Nick 60 because", "text"),
    ("unban takes nothing more", "/unban Nick now", "text"),
    ("reason too long", "/kick Nick " + "r" * 201, "text"),
    ("reason with a control", "/kick Nick a\x1bb", "text"),
    ("delete without id", "/delete", "text"),
    ("delete of a word", "/delete last", "text"),
    ("delete of zero", "/delete 0", "text"),
    ("delete of fullwidth digits", "/delete \uff14\uff12", "text"),
    ("json nickname not a string", '{"type": "kick", "nickname": 3}', "json"),
    ("json without nickname", '{"type": "ban"}', "json"),
    ("json unknown field", '{"type": "kick", "nickname": "N", "seconds": 5}', "json"),
    ("json seconds a string", '{"type": "ban", "nickname": "N", "seconds": "5"}', "json"),
    ("json seconds a float", '{"type": "mute", "nickname": "N", "seconds": 5.0}', "json"),
    ("json seconds true", '{"type": "mute", "nickname": "N", "seconds": true}', "json"),
    ("json reason null", '{"type": "kick", "nickname": "N", "reason": null}', "json"),
    ("json reason multiline", '{"type": "kick", "nickname": "N", "reason": "a\\nb"}', "json"),
    ("json delete id a string", '{"type": "delete", "id": "7"}', "json"),
    ("json delete negative", '{"type": "delete", "id": -1}', "json"),
    ("json delete more fields", '{"type": "delete", "id": 1, "x": 1}', "json"),
]


@pytest.mark.parametrize(("frame", "fmt"), **_cases(BAD_MODERATOR_COMMANDS))
def test_moderator_commands_with_bad_arguments_are_non_fatal_command_invalid(frame, fmt):
    with pytest.raises(ClientError) as caught:
        commands.parse_message(frame, None, fmt, MAX)
    assert (caught.value.code, caught.value.close_code) == (errors.COMMAND_INVALID, None)


@pytest.mark.parametrize(
    ("command", "target", "until", "text", "json"),
    [
        (M("kick", "nick"), "Nick", None, "Nick removed", {"nickname": "Nick"}),
        (
            M("ban", "Nick", 60),
            "Nick",
            1795622892000,
            "Nick banned until 2026-11-25T16:08:12+00:00",
            {"nickname": "Nick", "until": 1795622892000},
        ),
        (M("unmute", "Nick"), "Nick", None, "Nick unmuted", {"nickname": "Nick"}),
        (M("delete", id=4), "", None, "Message 4 deleted", {"id": 4}),
    ],
    ids=["kick", "ban", "unmute", "delete"],
)
def test_a_moderator_is_told_what_was_done(command, target, until, text, json):
    assert protocol.moderated("R", command, target, until, "text") == text
    frame = orjson.loads(protocol.moderated("R", command, target, until, "json"))
    assert frame == {"type": "moderated", "room": "R", "action": command.action, **json}


def test_a_deletion_is_an_event_with_the_id_for_json_and_a_line_for_text():
    frames = protocol.deleted("R", 42, "Nick", 5)
    assert frames["text"] == "A moderator deleted a message by Nick"
    assert orjson.loads(frames["json"]) == {
        "type": "delete",
        "room": "R",
        "id": 42,
        "nickname": "Nick",
        "ts": 5,
    }


def test_every_error_code_and_close_code_is_in_the_protocol_reference():
    reference = (ROOT / "docs" / "protocol.md").read_text()
    api = (ROOT / "docs" / "api.md").read_text()
    for name, value in vars(errors).items():
        if name.startswith("WS_"):
            assert f"\n| {value} |" in reference, name
        elif name.isupper() and isinstance(value, str):
            assert f"| `{value}` |" in reference or f"| `{value}` |" in api, name
