"""The REST API: one front page and the collections of both apps."""

from django.urls import include, path

from config.api_root import api_root

urlpatterns = [
    path("", api_root, name="api-root"),
    path("", include("crm.api.urls")),
    path("", include("nurture.api.urls")),
]
