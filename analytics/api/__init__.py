"""The REST API under /api/v1/: `params` reads every query parameter, `paging` pages lists,
`serializers` holds the shapes, and one module of views per room (`registries`, `content`, `layers`,
`scans`, `insights`, `engines`, `ops`) calls one selector or service each."""
