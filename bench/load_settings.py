"""Settings for bench/load.py only: the product's settings plus the floor's URLconf and template
directory. Never used by the product (gunicorn gets DJANGO_SETTINGS_MODULE=load_settings with
bench/ on PYTHONPATH only while the load benchmark runs)."""

from __future__ import annotations

import os

from federation.settings import *  # noqa: F403
from federation.settings import TEMPLATES

ROOT_URLCONF = "load_urls"
# The floor's template is written by bench/load.py at the size of the portal page it measured.
TEMPLATES[0]["DIRS"] = [*TEMPLATES[0]["DIRS"], os.environ["BENCH_FLOOR_TEMPLATES"]]  # type: ignore[index]
