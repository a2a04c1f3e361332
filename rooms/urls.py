"""HTTP routes of the rooms app."""

from django.urls import path

from rooms import views

urlpatterns: list = [
    path("", views.index, name="index"),
    path("chat/", views.enter, name="enter"),
    path("chat/<str:room_name>/", views.room, name="room"),
]
