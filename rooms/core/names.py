"""Names people choose, nicknames and room names, as pure functions: what is refused (what
would not show as what it is: invisible, control and direction-changing characters; no letter
or digit), and when two nicknames are the same (`nickname_key`). docs/protocol.md is the
reference."""

import re
import unicodedata

from rooms.core import errors
from rooms.core.confusables import PROTOTYPES
from rooms.core.errors import ClientError

MAX_NICKNAME_LENGTH = 32
MAX_ROOM_NAME_LENGTH = 100

# Unicode categories refused in names: controls, unassigned, surrogates, private use,
# and line/paragraph separators. Format characters (Cf) are refused as invisible below.
_FORBIDDEN_CATEGORIES = {"Cc", "Cn", "Cs", "Co", "Zl", "Zp"}

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 17.0): characters no font
# shows. Among them the bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069,
# which make "\u202enimda" show as "admin"), the zero-width characters, the Hangul fillers
# (U+115F, U+1160, U+3164, U+FFA0: letters, yet blank), variation selectors and tags. Names
# refuse them all but ZWJ and VS16 inside emoji sequences.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip
_IGNORABLE = re.compile(
    "[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _DEFAULT_IGNORABLE) + "]"
)
_BRAILLE_BLANK = "\u2800"  # a symbol, not ignorable, but blank in every font: the usual blank name
_ZWJ, _VS16, _KEYCAP = "\u200d", "\ufe0f", "\u20e3"
_KEYCAP_BASES = "#*0123456789"
_EMOJI_MODIFIERS = ("\U0001f3fb", "\U0001f3ff")  # skin tones, category Sk


def _emoji(char: str) -> bool:
    # Category So stands in for Extended_Pictographic, which Python's unicodedata lacks.
    return unicodedata.category(char) == "So"


def _shown(name: str, index: int) -> bool:
    """Whether name[index], a ZWJ or VS16, does something visible: inside an emoji sequence
    ("👩‍💻", "❤️", "1️⃣") it does; after a letter it only hides a difference."""
    before = name[index - 1] if index else ""
    if name[index] == _VS16:
        if before and before in _KEYCAP_BASES:
            return name[index + 1 : index + 2] == _KEYCAP
        return unicodedata.category(before)[:1] in ("S", "P") if before else False
    if before == _VS16 and index >= 2:
        before = name[index - 2]
    after = name[index + 1 : index + 2]
    if not (before and after):
        return False
    emoji_before = _emoji(before) or _EMOJI_MODIFIERS[0] <= before <= _EMOJI_MODIFIERS[1]
    return emoji_before and _emoji(after)


def _hidden(name: str, index: int) -> bool:
    char = name[index]
    if char in (_ZWJ, _VS16):
        return not _shown(name, index)
    category = unicodedata.category(char)
    return (
        category in _FORBIDDEN_CATEGORIES
        or category == "Cf"
        or char == _BRAILLE_BLANK
        or _IGNORABLE.match(char) is not None
    )


def _unusable(name: str) -> str | None:
    """Why a nickname or room name would not show as what it is, or None if it would."""
    for index, char in enumerate(name):
        if _hidden(name, index):
            return (
                "cannot contain invisible, control, unassigned or direction-changing "
                f"characters (found {code_point(char)})"
            )
    if not any(unicodedata.category(char)[0] in "LN" for char in name):
        return "need at least one letter or digit"
    return None


def parse_room(room: str) -> str:
    """Validate a room name taken from the URL path (already percent-decoded); return it in
    NFC, so that canonically equivalent spellings name one room (case still matters)."""
    room = unicodedata.normalize("NFC", room)
    if not room or len(room) > MAX_ROOM_NAME_LENGTH or "/" in room:
        raise ClientError(
            errors.ROOM_INVALID,
            f"Room names are 1 to {MAX_ROOM_NAME_LENGTH} printable characters, without '/'.",
            errors.WS_4400_BAD_REQUEST,
        )
    problem = _unusable(room)
    if problem is not None:
        raise ClientError(errors.ROOM_INVALID, f"Room names {problem}.", errors.WS_4400_BAD_REQUEST)
    return room


def parse_nickname(raw: str | None) -> str:
    """Validate a nickname; surrounding whitespace is dropped, the rest kept as typed."""
    nickname = (raw or "").strip()
    if not nickname:
        raise ClientError(
            errors.NICKNAME_REQUIRED, "No nickname specified.", errors.WS_4400_BAD_REQUEST
        )
    if len(nickname) > MAX_NICKNAME_LENGTH:
        raise ClientError(
            errors.NICKNAME_INVALID,
            f"Nicknames are 1 to {MAX_NICKNAME_LENGTH} printable characters.",
            errors.WS_4400_BAD_REQUEST,
        )
    problem = _unusable(nickname)
    if problem is not None:
        raise ClientError(
            errors.NICKNAME_INVALID, f"Nicknames {problem}.", errors.WS_4400_BAD_REQUEST
        )
    return nickname


def _fold(text: str) -> str:
    # Unicode's compatibility caseless match (D146): stable under NFKC and casefolding.
    once = unicodedata.normalize("NFKD", unicodedata.normalize("NFD", text).casefold())
    return unicodedata.normalize("NFKD", once.casefold())


def nickname_key(nickname: str) -> str:
    """What two nicknames share when people could take one for the other, so that a room
    holds one of them: the UTS #39 skeleton (invisible characters dropped, each character
    replaced by its confusable prototype) of the nickname with case and width folded,
    folded again. "Alice", "alice", "Ａｌｉｃｅ" and "Аlice" (Cyrillic А) share one key."""
    skeleton = _IGNORABLE.sub("", _fold(nickname)).translate(PROTOTYPES)
    return _fold(skeleton)


def code_point(char: str) -> str:
    """A character as people look it up: U+00E9."""
    return f"U+{ord(char):04X}"
