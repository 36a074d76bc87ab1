from django.urls import path

from synthesis import views

app_name = "synthesis"
urlpatterns = [
    path("batches/", views.batches, name="batches"),
]
