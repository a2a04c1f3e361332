"""HTTP routes of the rooms app."""

urlpatterns: list = []
