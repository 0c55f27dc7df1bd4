from django.urls import path
from rest_framework.routers import SimpleRouter

from . import audiences, esp, views

router = SimpleRouter()
router.register("events", views.EventViewSet, basename="event")
router.register("cadences", views.CadenceViewSet, basename="cadence")
router.register("enrollments", views.EnrollmentViewSet, basename="enrollment")
router.register("handoffs", views.HandoffViewSet, basename="handoff")

urlpatterns = router.urls + [
    path(
        "audiences/<slug:audience>/members/",
        audiences.AudienceMemberList.as_view(),
        name="audience-members",
    ),
    path(
        "audiences/<slug:audience>/members.csv",
        audiences.AudienceMemberCsv.as_view(),
        name="audience-members-csv",
    ),
    path(
        "webhooks/esp/<slug:provider>/",
        esp.ProviderWebhook.as_view(),
        name="esp-webhook",
    ),
]
