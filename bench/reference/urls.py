"""No HTTP views: the baseline is measured on its WebSocket path only."""

urlpatterns: list = []
