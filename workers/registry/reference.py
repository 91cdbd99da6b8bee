"""Image references and scan targets, validated by the distribution reference grammar.

The grammar is the one of github.com/distribution/reference (`regexp.go`, `reference.go`)::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain "/"] remote-name
    domain          := host [":" port-number]
    host            := domain-name | IPv4address | "[" IPv6address "]"
    remote-name     := path-component ["/" path-component]*
    path-component  := alpha-numeric [separator alpha-numeric]*
    alpha-numeric   := /[a-z0-9]+/
    separator       := /[_.]|__|[-]+/
    tag             := /[\\w][\\w.-]{0,127}/
    digest          := algorithm ":" encoded

with the name (domain included) at most 255 characters. Unlike Docker's normalisation, nothing is
added: no `docker.io`, no `library/`, no `latest`; a reference names exactly what it says.

A first component is the domain when it contains "." or ":", is "localhost", or is a bracketed IPv6
address (`splitDockerDomain` in `normalize.go`); otherwise the whole name is the repository.

Digests (OCI image-spec, "Digests"): only the registered algorithms are accepted, since only those
can be verified: `sha256` with 64 and `sha512` with 128 lowercase hex characters.

Hosts are stricter than the grammar: a host whose last label is numeric is an IPv4 address (the WHATWG
URL standard's "ends in a number" rule, which resolvers follow too: `127.1` and `2130706433` reach
127.0.0.1), so it must be RFC 3986 `IPv4address`, four decimal octets without leading zeros
(`0177.0.0.1` is refused), and every host must be one httpx can put in a URL (IDNA labels included).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import httpx

from .errors import ReferenceError

NAME_TOTAL_LENGTH_MAX = 255
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_API_HOST = "registry-1.docker.io"
TAG_MAX = 128

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"

PATH_COMPONENT_RE = re.compile(rf"^{_PATH_COMPONENT}$")
REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
DOMAIN_NAME_RE = re.compile(rf"^{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*$")
IPV6_RE = re.compile(r"^\[[a-fA-F0-9:]+\]$")
# RFC 3986 3.2.2 dec-octet: 0-255 without leading zeros.
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
IPV4_RE = re.compile(rf"^{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}$")
_NUMERIC_LABEL_RE = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")

# OCI image-spec "Registered algorithms": encoded part, exact length, lowercase hex.
DIGEST_ALGORITHMS = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference. `registry` is `host[:port]` when the reference names one."""

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full name: `registry/repository`, or the repository alone."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def identifier(self) -> str | None:
        """What to ask `/v2/<name>/manifests/` for: the digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """What to scan: a whole registry (`repository` None), one repository, or one tag or digest."""

    registry_url: str
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None

    @property
    def kind(self) -> str:
        """`"registry"`, `"repository"` or `"tag"` (a tag or a digest)."""
        if self.repository is None:
            return "registry"
        return "tag" if (self.tag or self.digest) else "repository"


def validate_digest(digest: str) -> str:
    """Return `digest` if it is `algorithm:hex` of a registered algorithm; raise `ReferenceError`."""
    if not DIGEST_RE.match(digest):
        raise ReferenceError(f"invalid digest {digest!r}: expected algorithm:hex, e.g. sha256:<64 hex>")
    algorithm, encoded = digest.split(":", 1)
    pattern = DIGEST_ALGORITHMS.get(algorithm)
    if pattern is None:
        raise ReferenceError(
            f"invalid digest {digest!r}: unsupported algorithm {algorithm!r} (sha256, sha512)"
        )
    if not pattern.match(encoded):
        want = 64 if algorithm == "sha256" else 128
        raise ReferenceError(f"invalid digest {digest!r}: {algorithm} needs {want} lowercase hex characters")
    return digest


def validate_tag(tag: str) -> str:
    """Return `tag` if it matches `[\\w][\\w.-]{0,127}`; raise `ReferenceError`."""
    if not TAG_RE.match(tag):
        if not tag:
            raise ReferenceError("invalid tag: empty")
        if len(tag) > TAG_MAX:
            raise ReferenceError(f"invalid tag {tag[:20]!r}...: longer than {TAG_MAX} characters")
        raise ReferenceError(
            f"invalid tag {tag!r}: letters, digits, '_', '.' and '-' only, not starting with '.' or '-'"
        )
    return tag


def validate_repository(repository: str) -> str:
    """Return `repository` if it is a valid remote name (no domain); raise `ReferenceError`."""
    if not repository:
        raise ReferenceError("invalid repository name: empty")
    if len(repository) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(f"invalid repository name: longer than {NAME_TOTAL_LENGTH_MAX} characters")
    if not REPOSITORY_RE.match(repository):
        for component in repository.split("/"):
            if not component:
                raise ReferenceError(f"invalid repository name {repository!r}: empty path component")
            if not PATH_COMPONENT_RE.match(component):
                hint = " (uppercase is not allowed)" if component.lower() != component else ""
                raise ReferenceError(
                    f"invalid repository name {repository!r}: bad path component {component!r}{hint}"
                )
        raise ReferenceError(f"invalid repository name {repository!r}")  # pragma: no cover - unreachable
    return repository


def validate_host(host: str) -> str:
    """Return `host[:port]` if valid (domain name, IPv4 or bracketed IPv6; port 1-65535)."""
    name, port = _split_port(host)
    if name.startswith("[") or name.endswith("]"):
        if not IPV6_RE.match(name):
            raise ReferenceError(f"invalid registry host {host!r}: bad IPv6 address")
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise ReferenceError(f"invalid registry host {host!r}: bad IPv6 address") from None
    elif not DOMAIN_NAME_RE.match(name):
        raise ReferenceError(f"invalid registry host {host!r}: bad domain name {name!r}")
    elif _NUMERIC_LABEL_RE.match(name.rsplit(".", 1)[-1]) and not IPV4_RE.match(name):
        raise ReferenceError(
            f"invalid registry host {host!r}: {name!r} is read as an IPv4 address but is not four "
            "decimal octets 0-255 without leading zeros (RFC 3986 3.2.2)"
        )
    if port is not None and (not port.isdigit() or not port.isascii() or not 0 < int(port) <= 65535):
        raise ReferenceError(f"invalid registry host {host!r}: bad port {port!r}")
    try:
        httpx.URL(f"http://{host}/").host  # noqa: B018 - an IDNA host is decoded only when asked for
    except (httpx.InvalidURL, ValueError) as exc:  # IDNA errors are ValueErrors
        raise ReferenceError(f"invalid registry host {host!r}: {exc}") from None
    return host


def _split_port(host: str) -> tuple[str, str | None]:
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return host, None
        rest = host[end + 1 :]
        if rest.startswith(":"):
            return host[: end + 1], rest[1:]
        if rest:
            return host, None  # let the IPv6 check reject it
        return host, None
    if ":" in host:
        name, port = host.rsplit(":", 1)
        return name, port
    return host, None


def _looks_like_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def _split_tag_digest(s: str, original: str) -> tuple[str, str | None, str | None]:
    rest, digest = s, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        validate_digest(digest)
    # The tag separator is a ":" after the last "/": a ":" before it is the port.
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        validate_tag(tag)
    if not rest:
        raise ReferenceError(f"invalid reference {original!r}: no repository name")
    return rest, tag, digest


def parse_reference(s: str) -> Reference:
    """Parse `[host[:port]/]path[:tag][@digest]` into a `Reference`; raise `ReferenceError` if invalid.

    >>> parse_reference("127.0.0.1:5000/team/app:v1")
    Reference(registry='127.0.0.1:5000', repository='team/app', tag='v1', digest=None)
    """
    if not isinstance(s, str) or not s:
        raise ReferenceError("invalid reference: empty")
    if s != s.strip():
        raise ReferenceError(f"invalid reference {s!r}: surrounding whitespace")
    rest, tag, digest = _split_tag_digest(s, s)
    if len(rest) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(f"invalid reference: name longer than {NAME_TOTAL_LENGTH_MAX} characters")
    registry = None
    first, sep, remainder = rest.partition("/")
    # distribution also takes an uppercase first component for a domain: it cannot be a path.
    if sep and (_looks_like_domain(first) or first != first.lower()):
        registry = validate_host(first)
        rest = remainder
    validate_repository(rest)
    return Reference(registry=registry, repository=rest, tag=tag, digest=digest)


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and `[::1]` (a port, if any, is ignored)."""
    name, _ = _split_port(host)
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_scan_target(s: str, *, what: str = "scan target") -> ScanTarget:
    """Parse what a user names for a scan.

    - `http://127.0.0.1:5000`, `https://host`, bare `host:port` or `host` (no path): a whole registry;
    - `127.0.0.1:5000/team/app`, `http://host:port/team/app`: one repository;
    - `127.0.0.1:5000/team/app:v1`, `...@sha256:<hex>`: one tag or digest;
    - `docker.io/alpine` (or `index.docker.io/...`): `https://registry-1.docker.io`, `library/alpine`.
      A bare `alpine` stays a registry host named alpine: a name without a host names no registry.

    Without a scheme, loopback hosts (127.0.0.0/8, localhost, [::1]) get `http://` and everything else
    `https://`. Without a scheme and with a path, the first component must look like a registry host
    (contain "." or ":", or be localhost or an IPv6 address), or `team/app` would scan host `team`.
    Userinfo, a query or a fragment is refused, and userinfo is never repeated in the message (RFC 3986
    3.2.1: it may be a password). `what` names the input in error messages.
    """
    if not isinstance(s, str) or not s.strip():
        raise ReferenceError(f"invalid {what}: empty")
    text = s.strip()
    scheme = None
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
    if "@" in text.split("/", 1)[0]:
        # Never echoed: the userinfo may be a password (RFC 3986 3.2.1 deprecates it in URLs).
        raise ReferenceError(
            f"invalid {what}: no user:password@ allowed in it; give credentials on their own"
        )
    if scheme is not None and scheme not in ("http", "https"):
        raise ReferenceError(f"invalid {what} {s!r}: scheme must be http or https, not {scheme!r}")
    if any(c in text for c in "?#"):
        raise ReferenceError(f"invalid {what} {s!r}: no query or fragment allowed")
    host, _, path = text.partition("/")
    path = path.rstrip("/")
    if not host:
        raise ReferenceError(f"invalid {what} {s!r}: no registry host")
    validate_host(host)
    if path and scheme is None and not _looks_like_domain(host):
        raise ReferenceError(
            f"invalid {what} {s!r}: {host!r} is not a registry host; write host:port/{text} "
            "or give a URL with http:// or https://"
        )
    if scheme is None:
        scheme = "http" if is_loopback_host(host) else "https"
    hub = host.lower() in DOCKER_HUB_HOSTS
    if hub:
        # Docker Hub's API lives on registry-1.docker.io, and its one-component names are
        # `library/<name>` (distribution/reference `normalize.go`: ParseNormalizedNamed).
        host, scheme = DOCKER_HUB_API_HOST, "https"
    registry_url = f"{scheme}://{host.lower()}"
    if not path:
        return ScanTarget(registry_url=registry_url)
    repository, tag, digest = _split_tag_digest(path, s)
    if hub and "/" not in repository:
        repository = f"library/{repository}"
    validate_repository(repository)
    if len(host) + 1 + len(repository) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(f"invalid {what}: name longer than {NAME_TOTAL_LENGTH_MAX} characters")
    return ScanTarget(registry_url=registry_url, repository=repository, tag=tag, digest=digest)
