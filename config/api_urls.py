"""The REST API: one router for both apps."""

from django.urls import include, path

urlpatterns = [
    path("", include("crm.api.urls")),
    path("", include("nurture.api.urls")),
]
