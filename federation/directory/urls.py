"""Routes of directory sync (SPEC §3.4 /scim/v2/, and the admin page /scim/)."""

from django.urls import URLPattern, path, re_path

from federation.directory import views

app_name = "directory"

urlpatterns: list[URLPattern] = [
    path("scim/", views.status_page, name="status"),
    re_path(r"^scim/v2/(?:(?:Users|Groups)/)?\.search$", views.search, name="search"),
    path("scim/v2/Users", views.users, name="users"),
    path("scim/v2/Users/<str:scim_id>", views.user, name="user"),
    path("scim/v2/Groups", views.groups, name="groups"),
    path("scim/v2/Groups/<str:scim_id>", views.group, name="group"),
    path("scim/v2/ServiceProviderConfig", views.provider_config, name="config"),
    path("scim/v2/ResourceTypes", views.resource_types, name="resource-types"),
    path("scim/v2/ResourceTypes/<str:item_id>", views.resource_type, name="resource-type"),
    path("scim/v2/Schemas", views.schemas, name="schemas"),
    path("scim/v2/Schemas/<str:item_id>", views.schema, name="schema"),
    re_path(r"^scim/v2/(?P<rest>.*)$", views.unknown, name="unknown"),
]
