"""Compressed layer sizes of 15 Docker Hub official images, as Docker Hub reports them.

Read from docker-library/repo-info (https://github.com/docker-library/repo-info), file
`repos/<image>/remote/latest.md`, section "linux; amd64", list "Layers:", field "Size: ... (N bytes)": the
registry's Content-Length of each layer blob, i.e. compressed bytes as stored. One commit per file (below),
read in November 2026. The generator samples layer counts and own-layer sizes from these, the shape
report (`bench.shape`) compares against them.

What the sample is and is not: the `latest` tag of 15 official images picked to cover the base families
the generator builds on (Debian slim / full, Alpine, Ubuntu and stacks on them), not a random draw from
Docker Hub. Official images carry larger runtime layers than a typical user image, so the size
percentiles here lean large; they are real measurements, which the papers' CDFs were not available as.
"""

# image:tag -> (repo-info commit, compressed layer sizes in bytes, bottom layer first)
SAMPLE: dict[str, tuple[str, list[int]]] = {
    "php:8-apache-bookworm": (
        "3321143b598dd5d0589379bcec636c08f6882261",
        [28237639, 227, 104345776, 227, 20142182, 430, 483, 14539803, 491, 15144180, 2459, 245, 892, 32],
    ),
    "python:latest": (
        "0c376450b2d177f8478d9fd05ad2b9de6be78fd6",
        [49337828, 25639590, 67800074, 236338551, 6092327, 29758423, 250],
    ),
    "nginx:latest": (
        "07d85259206eb942e61621c998f30ba8bd48adb7",
        [29780905, 33325076, 626, 955, 403, 1210, 1397],
    ),
    "alpine:latest": ("1746b58749182f00f5d2c26a53fff697cfce2c81", [3849738]),
    "redis:latest": (
        "0ae7309187d6256f5549f0408473cfa4a23383ea",
        [29830418, 1101, 824, 25639861, 97, 32, 2109],
    ),
    "postgres:latest": (
        "0b63eeca29bdd695a0db3d3249137b9929da650d",
        [29830418, 1167, 6443022, 1256766, 8203833, 1311722, 116, 3138, 115397538, 19418, 128, 6108, 186],
    ),
    "node:latest": (
        "0833c0d04a2716e986bbade897206eb15c99b66b",
        [49317255, 25634938, 67778134, 236248824, 3329, 63411295, 446],
    ),
    "golang:latest": (
        "01b535c016d07e973eeb58e43ad1e2552018a407",
        [49312572, 25638468, 67792989, 102272980, 67288392, 127, 32],
    ),
    "ubuntu:latest": ("01470af91233e78aee4c06b90ded37a40ddcfaa3", [41568275, 389]),
    "httpd:latest": (
        "157d40004033426c6d74f484d4e78da6a055256f",
        [29830418, 145, 32, 2008639, 13453247, 292],
    ),
    "traefik:latest": ("1fb527e2b7c8073b7e72168cf4f6bb8757b0e724", [3849738, 416269, 50943596, 370]),
    "memcached:latest": (
        "23d0bf940a7ba6d4f219ac239ec10dadb49d20a8",
        [29792658, 1110, 136706, 2285876, 284, 122],
    ),
    "pypy:latest": (
        "21b246af8f3bb1abd7ed7fa3e4d7308c9ea746a8",
        [49312572, 25638468, 67792989, 236258363, 2976797, 34178705],
    ),
    "cassandra:latest": (
        "0a61d91bbfbbfa260cd2edfc318d844fe0cc4a45",
        [29792658, 1116, 15677851, 4271551, 47509943, 128, 73947004, 1224],
    ),
    "eclipse-temurin:latest": (
        "11bfd4f99b512979c1af2554b414258d8476f41f",
        [41602703, 394, 22368066, 92756921, 32, 2464],
    ),
}

# Layers that are one blob in several of the images above (same digest in repo-info): counted once.
SHARED = {
    3849738: 2,  # alpine 3.24.2 rootfs: alpine, traefik
    29830418: 3,  # debian trixie-slim (19 Sep): redis, postgres, httpd
    29792658: 2,  # debian trixie-slim (24 Aug): memcached, cassandra
    49312572: 2,  # debian trixie (13 Jul): golang, pypy
    25638468: 2,  # buildpack-deps:trixie-curl
    67792989: 2,  # buildpack-deps:trixie-scm
    32: 5,  # the empty layer (sha256:4f4fb700...): php, redis, golang, httpd, eclipse-temurin
}


def _distinct_layer_sizes() -> list[int]:
    sizes: list[int] = []
    for _, layers in SAMPLE.values():
        sizes.extend(layers)
    for size, images in SHARED.items():
        for _ in range(images - 1):
            sizes.remove(size)
    return sorted(sizes)


LAYER_SIZES = _distinct_layer_sizes()  # 90 distinct layers, sorted
LAYER_COUNTS = sorted(len(layers) for _, layers in SAMPLE.values())  # 15 images
IMAGE_SIZES = sorted(sum(layers) for _, layers in SAMPLE.values())


def percentile(sorted_values: list[int], p: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    k = (len(sorted_values) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
