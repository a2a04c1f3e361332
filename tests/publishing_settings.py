"""The project's settings with tests/publishing_urls.py: a site whose own views publish."""

from chatproject.settings import *  # noqa: F403

ROOT_URLCONF = "tests.publishing_urls"
