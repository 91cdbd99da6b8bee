#!/usr/bin/env python
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def env_file_load(path: Path) -> bool:
    """Set the variables of `path` (KEY=VALUE lines, as `make run` writes var/run.env) that the
    environment does not set already: the environment wins. False when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not line.lstrip().startswith("#"):
            os.environ.setdefault(key.strip(), value)
    return True


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # the settings `make run` ran with, so its README commands work in any shell
    env_file = Path(os.environ.get("LAYERLENS_ENV_FILE") or ROOT / "var" / "run.env")
    loaded = env_file_load(env_file)
    from django.conf import settings
    from django.core.management import execute_from_command_line

    try:
        settings.SECRET_KEY  # noqa: B018 - loads the settings, which check the environment
    except RuntimeError as exc:
        hint = "" if loaded else f"; no {env_file}: run `make run` once (it writes it), or export SECRET_KEY"
        sys.exit(f"manage.py: {exc}{hint}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
