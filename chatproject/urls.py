"""HTTP routes."""

from django.contrib import admin
from django.urls import include, path

from rooms.web import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("rooms.urls")),
]
