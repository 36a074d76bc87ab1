from django.urls import path

from synthesis import views

app_name = "synthesis"
urlpatterns = [
    path("batches/", views.batches, name="batches"),
    path("batches/<int:pk>/", views.batch_detail, name="batch"),
    path("batches/<int:pk>/<str:action>/", views.batch_action, name="batch-action"),
    path("exports/", views.exports, name="exports"),
    path("frames/<int:pk>/provenance/", views.frame_provenance, name="frame-provenance"),
    path("statistics/", views.statistics, name="statistics"),
    path("stories/", views.stories, name="stories"),
    path("stories/<int:pk>/", views.story, name="story"),
    path("audit/", views.audit, name="audit"),
    path("statistics/plots/<slug:name>.png", views.plot, name="plot"),
]
