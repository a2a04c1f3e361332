"""HTTP routes of the rooms app."""

from django.contrib.auth import views as auth
from django.urls import path

from rooms.web import api, posting, views

urlpatterns: list = [
    path("api/rooms", api.rooms, name="api-rooms"),
    path("api/rooms/<str:name>/", api.room, name="api-room"),
    path("api/rooms/<str:name>/messages", posting.messages, name="api-messages"),
    path("accounts/login/", auth.LoginView.as_view(template_name="rooms/login.html"), name="login"),
    path("accounts/logout/", auth.LogoutView.as_view(), name="logout"),
    path("", views.index, name="index"),
    path("chat/", views.enter, name="enter"),
    path("chat/<str:room_name>/", views.room, name="room"),
]
