"""The README's commands name what the demo that `make run` seeds holds, and run against it."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.conf import settings
from django.core.management import call_command

from harness.images import build_demo_registry
from harness.registry import RegistryServer

README = (settings.BASE_DIR / "README.md").read_text()
USING_IT = README.split("## Using it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def demo_registry(tmp_path_factory):
    registry = RegistryServer(workdir=tmp_path_factory.mktemp("demo-registry")).start()
    try:
        yield registry, build_demo_registry(registry.host)
    finally:
        registry.cleanup()


def test_the_readme_examples_name_repositories_tags_and_namespaces_of_the_demo(demo_registry):
    _, pushed = demo_registry
    tags = {(image.repository, image.tag) for image in pushed}
    refs = re.findall(r"127\.0\.0\.1:5000/([a-z0-9/_.-]+?)(?::([\w.-]+))?(?=[\s\]])", USING_IT)
    assert len(refs) >= 4
    for repository, tag in refs:
        assert repository in {r for r, _ in tags}, repository
        assert not tag or (repository, tag) in tags, f"{repository}:{tag}"
    for namespace in re.findall(r"--namespace (\w[\w/.-]*)", USING_IT):
        assert any(r.startswith(namespace + "/") for r, _ in tags), namespace


@pytest.mark.django_db
def test_the_readme_repository_and_tag_scans_and_report_run_against_the_demo(demo_registry):
    registry, _ = demo_registry
    for line in USING_IT.splitlines():
        argv = line.split("#", 1)[0].split()[2:]  # after `.venv/bin/python manage.py`
        if argv[:1] == ["scan"] and "/demo/" in argv[1] and "--deep" not in argv:
            argv = [a.replace("127.0.0.1:5000", registry.host) for a in argv if a != "--inline"]
            call_command(*argv, "--inline", "--no-progress", stdout=io.StringIO())
    out = io.StringIO()
    call_command("report", "--registry", registry.host, "--namespace", "demo", "--json", stdout=out)
    assert json.loads(out.getvalue())["images"] == 2  # demo/web 1.0 and 2.0, the two images scanned
