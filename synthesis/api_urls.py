"""API routes under /api/v1/: one ``router.register`` line per resource."""

from rest_framework.routers import DefaultRouter

from synthesis.api.batches import BatchViewSet
from synthesis.api.exports import ExportViewSet
from synthesis.api.statistics import StatisticsViewSet
from synthesis.api.views import CharacterViewSet, FrameViewSet, StoryViewSet

router = DefaultRouter()
router.register("characters", CharacterViewSet, basename="character")
router.register("stories", StoryViewSet, basename="story")
router.register("frames", FrameViewSet, basename="frame")
router.register("exports", ExportViewSet, basename="export")
router.register("batches", BatchViewSet, basename="api-batch")
router.register("statistics", StatisticsViewSet, basename="api-statistics")
urlpatterns = router.urls
