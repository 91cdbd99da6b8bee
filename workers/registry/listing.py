"""The lists: every repository of the catalog and every tag of a repository, page by page
(distribution-spec "Listing Tags"; the catalog, `GET /v2/_catalog`), as `Listing`, a base of
`RegistryClient`.

Pages are bounded in bytes and in number, a tag list in names (`max_tags`); `Link` rel=next is followed
only within the registry's origin, and a loop ends with `ProtocolError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from .errors import ProtocolError, error_detail
from .exchange import Exchange
from .reference import validate_repository
from .transport import origin

MAX_LIST_PAGE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100_000
MAX_IDLE_PAGES = 3  # consecutive pages with a `next` link and nothing new: a loop with changing URLs


class Listing(Exchange):
    """The catalog and tag lists; `page_size` and `max_tags` are set by `RegistryClient`'s constructor."""

    page_size: int
    max_tags: int

    def _get_json(
        self, resp: httpx.Response, body: bytes, *, what: str, repository: str | None
    ) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} is not a JSON object", registry=self.base_url, repository=repository)
        return doc

    def iter_repositories(self) -> Iterator[str]:
        """Every repository name of `GET /v2/_catalog`, following `Link: <...>; rel="next"` to the end.

        Names come out once each, in the registry's order. Raises `ProtocolError` for a pagination
        loop or a cross-origin `Link`, and the usual HTTP and transport errors.
        """
        return self._paginate("/v2/_catalog", "repositories", repository=None)

    def iter_tags(self, repository: str) -> Iterator[str]:
        """Every tag of `GET /v2/<name>/tags/list` (distribution-spec "Listing Tags"), paginated.

        A `"tags": null` body (a repository with no tags left) is an empty list; duplicates are dropped.
        A list longer than `max_tags` stops with `ProtocolError` once it gets there.
        """
        validate_repository(repository)
        return self._paginate(
            f"/v2/{repository}/tags/list", "tags", repository=repository, max_items=self.max_tags
        )

    def _resolve_link(self, current: httpx.URL, link: str, repository: str | None) -> httpx.URL:
        # RFC 8288 "Link": a relative target resolves against the request URL. Only same-origin
        # targets are followed, so credentials never leave the registry.
        try:
            target = current.join(link)
            target_origin = origin(target)  # httpx decodes an IDNA host only when asked for it
        except (httpx.InvalidURL, ValueError) as exc:  # IDNA errors are ValueErrors
            raise ProtocolError(
                f"invalid Link header {link[:200]!r}: {exc}", registry=self.base_url, repository=repository
            ) from exc
        if target_origin != origin(current):
            raise ProtocolError(
                f"Link rel=next points to another origin "
                f"({target.scheme}://{target.netloc.decode()}); refused",
                registry=self.base_url,
                repository=repository,
            )
        return target

    def _paginate(
        self, path: str, key: str, *, repository: str | None, max_items: int | None = None
    ) -> Iterator[str]:
        """Follow distribution-spec pagination ("Listing Tags"/catalog: `n`, `last`, `Link` rel=next).

        1. Ask for `n` = page size; on 400 PAGINATION_NUMBER_INVALID halve `n` and ask again.
        2. Yield the names not seen yet.
        3. Follow `Link` rel=next while there is one; stop with `ProtocolError` if a URL comes back
           (a loop), if several pages in a row bring nothing new, past `MAX_PAGES`, or past
           `max_items` names.
        """
        page_size = self.page_size
        url = httpx.URL(self.base_url + path, params={"n": page_size})
        fetched: set[str] = set()
        seen: set[str] = set()
        idle = 0
        where: dict[str, Any] = {"registry": self.base_url, "repository": repository}
        while True:
            if str(url) in fetched:
                raise ProtocolError(
                    f"pagination loop: Link rel=next points back at {url.raw_path.decode()}", **where
                )
            if len(fetched) >= MAX_PAGES:
                raise ProtocolError(f"pagination did not end after {MAX_PAGES} pages", **where)
            fetched.add(str(url))
            resp, body = self._request(url, max_bytes=MAX_LIST_PAGE_BYTES, repository=repository)
            if resp.status_code == 400 and page_size > 1 and not seen:
                # distribution answers 400 PAGINATION_NUMBER_INVALID above its maxentries, some others a
                # 400 without an error code: ask for half as many, on our own first URL only (a Link is
                # followed verbatim). A 400 with another code (UNSUPPORTED, NAME_INVALID) is raised.
                code, _ = error_detail(body)
                if code in (None, "PAGINATION_NUMBER_INVALID"):
                    page_size //= 2
                    url = url.copy_set_param("n", page_size)
                    continue
            self._raise_for_status(resp, body, repository=repository)
            doc = self._get_json(resp, body, what=f"{path} reply", repository=repository)
            items = doc.get(key)
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ProtocolError(f"{path} reply: {key!r} is not a list of strings", **where)
            new = 0
            for item in items:
                if item not in seen:
                    if max_items is not None and len(seen) >= max_items:
                        raise ProtocolError(
                            f"{key} list goes on past {max_items:,} entries; refused", **where
                        )
                    seen.add(item)
                    new += 1
                    yield item
            link = resp.links.get("next", {}).get("url")
            if not link:
                return
            idle = 0 if new else idle + 1
            if idle >= MAX_IDLE_PAGES:
                raise ProtocolError(f"pagination loop: {idle} pages in a row brought nothing new", **where)
            url = self._resolve_link(url, link, repository)
