from django.urls import include, path
from rest_framework.routers import DefaultRouter

from analytics.api import content, engines, events, insights, layers, policies, registries, scans

router = DefaultRouter()
router.register("registries", registries.RegistryViewSet, basename="registry")
router.register("repositories", registries.RepositoryViewSet, basename="repository")
router.register("tags", content.TagViewSet, basename="tag")
router.register("tag-events", content.TagEventViewSet, basename="tag-event")
router.register("images", content.ImageViewSet, basename="image")
router.register("layers", layers.LayerViewSet, basename="layer")
router.register("scans", scans.ScanViewSet, basename="scan")
router.register("engines", engines.EngineViewSet, basename="engine")
router.register("engine-scans", engines.EngineScanViewSet, basename="engine-scan")
router.register("policies", policies.CleanupPolicyViewSet, basename="policy")

urlpatterns = [
    path("summary/", content.SummaryView.as_view(), name="summary"),
    path("registries/<int:pk>/events/", events.RegistryEventsView.as_view(), name="registry-events"),
    path("images/<int:pk>/partners/", insights.ImagePartnersView.as_view(), name="image-partners"),
    path("images/<int:pk>/lineage/", insights.ImageLineageView.as_view(), name="image-lineage"),
    path("images/<int:pk>/derived/", insights.ImageDerivedView.as_view(), name="image-derived"),
    path("repositories/<int:pk>/growth/", insights.RepositoryGrowthView.as_view(), name="repository-growth"),
    path("stale-bases/", insights.StaleBasesView.as_view(), name="stale-bases"),
    path("whatif/", insights.WhatIfView.as_view(), name="whatif"),
    path("whatif/jobs/", insights.WhatIfJobsView.as_view(), name="whatif-jobs"),
    path("whatif/jobs/<int:pk>/", insights.WhatIfJobView.as_view(), name="whatif-job"),
    path("policies/preview/", insights.PolicyPreviewView.as_view(), name="policy-preview"),
    path("policies/preview/jobs/", insights.PolicyPreviewJobsView.as_view(), name="policy-preview-jobs"),
    path("cold/", insights.ColdImagesView.as_view(), name="cold-images"),
    path("missed-savings/", insights.MissedSavingsView.as_view(), name="missed-savings"),
    path("build-history/", insights.BuildHistoryView.as_view(), name="build-history"),
    path("largest-layers/", insights.LargestLayersView.as_view(), name="largest-layers"),
    path("cross-registry/", insights.CrossRegistryView.as_view(), name="cross-registry"),
    path("trends/", insights.TrendsView.as_view(), name="trends"),
    path("fleet/", engines.FleetView.as_view(), name="fleet"),
    path("layers/top/", layers.LayerTopView.as_view(), name="layer-top"),
    path(
        "layers/<str:digest>/repositories/",
        layers.LayerRepositoriesView.as_view(),
        name="layer-repositories",
    ),
    path("", include(router.urls)),
]
