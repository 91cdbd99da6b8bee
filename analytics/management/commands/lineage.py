"""`manage.py lineage`: an image's base chain or a registry's stale bases; `--refresh` backfills chains."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.ingest.answers import answers_refresh
from analytics.ingest.chains import chains_fill_layer_counts, chains_refresh
from analytics.models import RepositoryManifest
from analytics.selectors.answers import STALE_BASES
from analytics.selectors.lineage import image_lineage, stale_bases
from analytics.selectors.lists import registry_lookup


class Command(BaseCommand):
    help = "Print an image's base chain (--image ID) or a registry's stale bases (--stale REGISTRY)."

    def add_arguments(self, parser):
        parser.add_argument("--image", type=int, help="Image (repository-manifest) id.")
        parser.add_argument("--stale", metavar="REGISTRY", help="List tags that moved under derived images.")
        parser.add_argument(
            "--refresh", action="store_true", help="Write missing chain ids and layer counts first."
        )

    def handle(self, *args, **o):
        if o["refresh"]:
            self.stdout.write(f"chain rows written: {chains_refresh()}")
            self.stdout.write(f"chain rows given their layer count: {chains_fill_layer_counts()}")
        try:
            if o["image"]:
                holding = RepositoryManifest.objects.select_related("repository").get(id=o["image"])
                for depth, base in enumerate(image_lineage(holding=holding), 1):
                    self.stdout.write(
                        f"{'  ' * depth}{base.repository}@{base.digest} ({base.shared_layers} layers)"
                    )
            if o["stale"]:
                registry = registry_lookup(o["stale"])
                answers_refresh(registry_id=registry.id, answers=[STALE_BASES])
                for row in stale_bases(registry_id=registry.id):
                    self.stdout.write(
                        f"{row.repository}:{row.tag} moved {row.old_digest} -> {row.new_digest}: "
                        f"{row.images} images, {row.image_bytes} B"
                        + (
                            f"; old digest still tagged as {', '.join(row.still_tagged)}"
                            if row.still_tagged
                            else ""
                        )
                    )
        except (LayerlensError, RepositoryManifest.DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc
