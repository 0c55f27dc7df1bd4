from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("accounts", views.AccountViewSet, basename="account")

urlpatterns = router.urls
