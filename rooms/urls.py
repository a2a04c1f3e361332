"""HTTP routes of the rooms app."""

from django.urls import path

from rooms.web import api, views

urlpatterns: list = [
    path("api/rooms", api.rooms, name="api-rooms"),
    path("api/rooms/<str:name>/", api.room, name="api-room"),
    path("api/rooms/<str:name>/messages", api.messages, name="api-messages"),
    path("", views.index, name="index"),
    path("chat/", views.enter, name="enter"),
    path("chat/<str:room_name>/", views.room, name="room"),
]
