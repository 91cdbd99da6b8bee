"""A tag glob is turned into a PostgreSQL regular expression; one PostgreSQL would refuse (a `[...]` set
of other than tag characters, a backwards range, an empty set) or one too long is a 400 naming tag_glob,
on every scoped list and the what-if, never a 500 from the database."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

API = "/api/v1/"
REFUSED = ["[z-a]", "[[:alpha:]]*", "[\\]", "[!]", "x" * 256, "v[]a]"]
SCOPED = ["images/", "summary/", "layers/", "largest-layers/", "missed-savings/", "build-history/", "whatif/"]


@pytest.mark.parametrize("glob", REFUSED)
def test_a_glob_postgres_would_refuse_is_a_400_naming_it(glob, world, client_user):
    for path in SCOPED:
        response = client_user.get(API + path, {"registry": world.registry.id, "tag_glob": glob})
        assert response.status_code == 400 and "tag_glob" in response.content.decode(), (path, glob)
    body = {"registry": str(world.registry.id), "tag_glob": glob}
    response = client_user.post(API + "whatif/", body, format="json")
    assert response.status_code == 400 and "tag_glob" in response.content.decode()


@pytest.mark.parametrize(
    ("glob", "tags"),
    [("1.*", 1), ("[0-9].[0-9]", 1), ("[!0-9]*", 2), ("l?test", 2), ("[a-z.-]atest", 2), ("v*", 0)],
)
def test_globs_of_tag_characters_still_select(glob, tags, world, client_user):
    response = client_user.get(API + "whatif/", {"registry": world.registry.id, "tag_glob": glob})
    assert response.status_code == 200 and response.json()["tags"] == tags
