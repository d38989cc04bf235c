"""Routes of the step-up page (included by federation/urls.py)."""

from django.urls import path

from federation.stepup import views

urlpatterns = [
    path("step-up/", views.step_up, name="step-up"),
]
