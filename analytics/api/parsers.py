"""The API's JSON parser: DRF's, through `analytics.infra.jsontext`, so a body nested too deep is a 400
(`JSON parse error - nested deeper than 32 levels`) instead of a RecursionError. The body's size is
bounded before it is read (DATA_UPLOAD_MAX_MEMORY_SIZE, `config.middleware`)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from analytics.infra import jsontext


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return jsontext.loads(stream.read().decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError is one too
            raise ParseError(f"JSON parse error - {exc}")
