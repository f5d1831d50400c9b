"""Withdrawals (an undo back to no fix: the model's tag again) and where a change set was made (the portal undoes only
its own). Existing change sets take the source of their first fix (staff when they wrote none)."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def change_set_sources(apps, schema_editor):
    ChangeSet = apps.get_model("reviews", "ChangeSet")
    ManualFix = apps.get_model("reviews", "ManualFix")
    first = ManualFix.objects.filter(change_set_id=OuterRef("pk")).order_by("id").values("source")[:1]
    ChangeSet.objects.update(source=Coalesce(Subquery(first), Value("staff")))


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0007_asset_cluster"),
        ("reviews", "0008_effective_tag_asset_unchecked"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="manualfix",
            name="fix_has_new_label",
        ),
        migrations.AddField(
            model_name="changeset",
            name="source",
            field=models.CharField(
                choices=[
                    ("staff", "Staff screen"),
                    ("advertiser", "Advertiser portal"),
                    ("api", "API"),
                    ("carried", "Carried forward from a re-encoded copy"),
                ],
                default="staff",
                help_text="Where it was made: the portal may undo only what was made in the portal.",
                max_length=20,
            ),
        ),
        migrations.RunPython(change_set_sources, migrations.RunPython.noop),
        migrations.AddField(
            model_name="manualfix",
            name="withdraws",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "A withdrawal: from this row on no fix is in effect in the scope (the model's or the scrape's tag"
                    " is), until the next fix. It `reverts` the fix it withdraws; its old label is what that fix said."
                ),
            ),
        ),
        migrations.AlterField(
            model_name="manualfix",
            name="new_label",
            field=models.CharField(blank=True, help_text="Empty for a withdrawal.", max_length=100),
        ),
        migrations.AddConstraint(
            model_name="manualfix",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("withdraws", False), models.Q(("new_label", ""), _negated=True)),
                    models.Q(("new_label", ""), ("reverts__isnull", False), ("settles", False), ("withdraws", True)),
                    _connector="OR",
                ),
                name="fix_has_new_label_or_withdraws",
            ),
        ),
    ]
