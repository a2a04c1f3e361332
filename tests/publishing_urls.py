"""The project's routes, and a synchronous view publishing as a project's own code would:
directly, on commit, and from a thread of its own (tests/test_publish.py)."""

import threading

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

import rooms


def publish(request: HttpRequest, room: str) -> JsonResponse:
    ids = [rooms.publish(room, "from a view").id]
    with transaction.atomic():
        transaction.on_commit(
            lambda: ids.append(rooms.publish(room, "on commit", nickname="bot").id)
        )
    worker = threading.Thread(target=lambda: ids.append(rooms.publish(room, "from a thread").id))
    worker.start()
    worker.join()
    return JsonResponse({"ids": ids})


urlpatterns = [
    path("test/publish/<str:room>/", publish),
    path("", include("chatproject.urls")),
]
