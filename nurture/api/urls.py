from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("events", views.EventViewSet, basename="event")
router.register("cadences", views.CadenceViewSet, basename="cadence")
router.register("enrollments", views.EnrollmentViewSet, basename="enrollment")
router.register("handoffs", views.HandoffViewSet, basename="handoff")

urlpatterns = router.urls
