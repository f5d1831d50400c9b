import time

from catalog.models import ImageAsset
from catalog.services.clusters import clusters_rebuild
from config.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Recomputes every image's near-duplicate cluster from the perceptual hashes and color signatures (settings."
        "CARRY_FORWARD_MAX_DISTANCE and CARRY_FORWARD_MAX_COLOR_DISTANCE), e.g. after a threshold changed. "
        "Compares every pair of images."
    )

    def handle(self, *args: object, **options: object) -> None:
        started = time.monotonic()
        changed = clusters_rebuild()
        assets = ImageAsset.objects.count()
        clusters = ImageAsset.objects.values("cluster_id").distinct().count()
        self.stdout.write(
            f"{assets} images in {clusters} clusters; {changed} changed cluster ({time.monotonic() - started:.1f} s)"
        )
