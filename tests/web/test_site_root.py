"""The site's root and the admin's "View site" link lead to the overview, not to a 404."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


def test_root_redirects_to_the_overview(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/ui/"


def test_the_admins_view_site_link_is_the_overview(client):
    client.force_login(
        get_user_model().objects.create_user("op", password="pw-op-site", is_staff=True, is_superuser=True)
    )
    page = client.get("/admin/").content.decode()
    assert 'href="/ui/"' in page
