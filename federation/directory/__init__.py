"""Directory sync over SCIM 2.0 (SPEC §3.4 /scim/v2/, §4 Directory sync and leavers; docs/scim.md).

``tokens.py`` the IdPs' bearer tokens; ``compat.py`` Okta's and Entra ID's dialects made
standard; ``resources.py`` SCIM JSON in and out (through scim2-models); ``filters.py`` the
filters we answer; ``service.py`` users and groups; ``leavers.py`` what a leaver or mover loses;
``denies.py`` the IAM part, after commit; ``views.py`` / ``urls.py`` the endpoints and the admin
page; ``status.py`` what the admin page shows.
"""
