from django.urls import include, path
from rest_framework.routers import DefaultRouter

from analytics.api import views

router = DefaultRouter()
router.register("registries", views.RegistryViewSet, basename="registry")
router.register("repositories", views.RepositoryViewSet, basename="repository")
router.register("tags", views.TagViewSet, basename="tag")
router.register("tag-events", views.TagEventViewSet, basename="tag-event")
router.register("images", views.ImageViewSet, basename="image")
router.register("layers", views.LayerViewSet, basename="layer")
router.register("scans", views.ScanViewSet, basename="scan")

urlpatterns = [
    path("summary/", views.SummaryView.as_view(), name="summary"),
    path("", include(router.urls)),
]
