"""The domain errors every service raises; one DRF exception handler maps them to HTTP replies and the
management commands print them.

    LayerlensError (400)
    ├── InvalidRequest (400)   a value the caller sent cannot be used
    │   └── InvalidPolicy (400)   a cleanup policy that cannot be read: the line or JSON path named
    ├── NotFound (404)         a named registry, repository, image, layer or engine does not exist
    ├── Conflict (409)         the request contradicts what is stored (a name or URL taken)
    ├── RepositoryBusy (409)   another worker holds the repository's scan lease; try again later
    ├── SelectionTooLarge (422, an InvalidRequest)  more than a request computes: narrow it or run a job
    ├── TooManyJobs (429)      as many unfinished jobs as a caller may have
    └── Unreachable (502)      a Docker Engine to be registered did not answer
"""

from __future__ import annotations


class LayerlensError(Exception):
    """Base of the domain errors; `status` is the HTTP status the API answers with."""

    status = 400


class InvalidRequest(LayerlensError):
    status = 400


class InvalidPolicy(InvalidRequest):
    """A cleanup policy (ECR, GitLab, Harbor, Layerlens) that cannot be read or applied; the message names
    where (a line and column, or a JSON path such as `$.rules[1].selection.countNumber`)."""

    status = 400


class NotFound(LayerlensError):
    status = 404


class Conflict(LayerlensError):
    status = 409


class RepositoryBusy(LayerlensError):
    """Another worker holds the repository's scan lease; try again later."""

    status = 409


class SelectionTooLarge(InvalidRequest):
    """A computation over more than a request may read: narrow it, or run it as a job."""

    status = 422


class TooManyJobs(LayerlensError):
    """The caller has as many unfinished jobs as allowed; wait for one to finish."""

    status = 429


class Unreachable(LayerlensError):
    """What the request names did not answer (a Docker Engine met for the first time): nothing stored."""

    status = 502
