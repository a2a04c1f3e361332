"""The Lua scripts room state runs in Redis, one file each, read once at import."""

from pathlib import Path

HERE = Path(__file__).parent


def script(name: str) -> str:
    """The source of `name`.lua."""
    return (HERE / f"{name}.lua").read_text(encoding="utf-8")
