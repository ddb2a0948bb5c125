"""URL routes of the demo app."""
from django.urls import path

from demo import views

urlpatterns = [
    path("", views.index),
    path("health/", views.health),
]
