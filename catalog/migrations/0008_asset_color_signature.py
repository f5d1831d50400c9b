"""The color signature of every asset, computed from its stored thumbnail.

The near-duplicate clusters are then rebuilt under the new rule by catalog.apps (post_migrate, after this migration
was applied), through catalog.services.clusters_rebuild: its signal makes the reviews' stored tags follow, which
a migration of this app cannot do. An asset whose thumbnail cannot be read keeps an empty signature: it is a
near-duplicate of nothing (no cluster, no carried fix) until `manage.py rebuild_clusters` after a new download.
"""

import io

from django.core.files.storage import default_storage
from django.db import migrations, models
from PIL import Image, UnidentifiedImageError

from catalog.imaging import color_signature

CHUNK = 1000


def signatures_from_thumbnails(apps, schema_editor):
    """Each asset's signature from its stored thumbnail (the thumbnail-sized decode a fetch computes it from,
    through a JPEG at quality 82: within ~1 delta E of it, measured by `manage.py measure_near_duplicates`)."""
    ImageAsset = apps.get_model("catalog", "ImageAsset")
    pending = ImageAsset.objects.filter(color_signature="").order_by("id").values_list("id", "thumbnail")
    last = 0
    while chunk := list(pending.filter(id__gt=last)[:CHUNK]):
        assets = []
        for asset_id, name in chunk:
            try:
                with default_storage.open(name, "rb") as handle, Image.open(io.BytesIO(handle.read())) as image:
                    signature = color_signature(image.convert("RGB"))
            except (OSError, UnidentifiedImageError, ValueError):
                continue
            assets.append(ImageAsset(id=asset_id, color_signature=signature))
        ImageAsset.objects.bulk_update(assets, ["color_signature"], batch_size=CHUNK)
        last = chunk[-1][0]


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_asset_cluster"),
    ]

    operations = [
        migrations.AddField(
            model_name="imageasset",
            name="color_signature",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                editable=False,
                help_text=(
                    "Mean Lab color of each cell of an 8 x 8 grid over the picture, as hex: with the pHash, tells a "
                    "copy of the picture from the same picture in another color. Empty when unknown: then the image "
                    "is a near-duplicate of nothing (no cluster, no carried fix)."
                ),
                max_length=384,
            ),
        ),
        migrations.AlterField(
            model_name="imageasset",
            name="cluster_id",
            field=models.BigIntegerField(
                blank=True,
                db_index=True,
                editable=False,
                help_text=(
                    "Near-duplicate cluster: the id of its root, the first asset this one is a near-duplicate of "
                    "(perceptual hash within settings.CARRY_FORWARD_MAX_DISTANCE bits and color signature within "
                    "CARRY_FORWARD_MAX_COLOR_DISTANCE; its own id when alone). Empty until the asset has been "
                    "clustered."
                ),
                null=True,
            ),
        ),
        migrations.RunPython(signatures_from_thumbnails, migrations.RunPython.noop, elidable=True),
    ]
