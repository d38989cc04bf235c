"""The project's URLs plus the demo federation stand-in (as in demo mode), for tests only."""

from django.urls import path

from federation import demo_federation
from federation.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("demo-federation/", demo_federation.federation, name="demo-federation"),
]
