"""rooms, a Django Channels chat server. Its public API for the project's own code:
`publish` and `apublish` (rooms.chat.publish), with `Published` and `PublishError`.

They are imported on first use, so that `import rooms`, which Django's app loading does
before any model exists, imports nothing else.
"""

__all__ = ["publish", "apublish", "Published", "PublishError"]


def __getattr__(name: str):
    if name in __all__:
        from rooms.chat import publish

        return getattr(publish, name)
    raise AttributeError(f"module 'rooms' has no attribute {name!r}")
