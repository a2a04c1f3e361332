"""The rooms app: what it needs from every server process it runs in."""

import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class RoomsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "rooms"

    def ready(self) -> None:
        from channels.layers import get_channel_layer

        from rooms.access import signals
        from rooms.core import shutdown
        from rooms.state.backends import get_writer

        signals.connect()

        # The channel layer checks its configuration and the library names it relies on
        # (rooms.internals) as it is made: at start-up, not at the first connection.
        get_channel_layer()

        async def write_history() -> None:
            """Write every accepted message still pending; say how many, or loudly not."""
            writer = get_writer()
            pending = writer.pending
            try:
                await writer.close()
            except BaseException:
                logger.error("history: %d pending messages not written", writer.pending)
                raise
            logger.info("history: %d pending messages written", pending)

        shutdown.on_shutdown("history", write_history)
