"""The outbox for servers without write_soon: room events in order with everything else."""

import asyncio

from rooms.chat.outbox import Outbox


def recorder() -> tuple[list[dict], object]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        await asyncio.sleep(0)  # a server whose send suspends, as uvicorn's may
        sent.append(message)

    return sent, send


async def test_queued_texts_go_out_before_a_later_send_and_in_order():
    sent, send = recorder()
    outbox = Outbox(send)
    outbox.write_soon("a")
    outbox.write_soon("b")
    await outbox.send({"type": "websocket.send", "text": "c"})
    outbox.write_soon("d")
    await asyncio.sleep(0.01)
    assert [message["text"] for message in sent] == ["a", "b", "c", "d"]


async def test_nothing_is_sent_after_the_close():
    sent, send = recorder()
    outbox = Outbox(send)
    outbox.write_soon("a")
    await outbox.send({"type": "websocket.close", "code": 4429})
    outbox.write_soon("b")
    await asyncio.sleep(0.01)
    assert sent == [
        {"type": "websocket.send", "text": "a"},
        {"type": "websocket.close", "code": 4429},
    ]
