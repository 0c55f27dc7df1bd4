"""Public pages that need no login: the one-click unsubscribe link."""

from django.urls import path

from . import views

app_name = "nurture"

urlpatterns = [
    path("<str:token>/", views.unsubscribe, name="unsubscribe"),
]
