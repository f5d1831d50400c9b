"""Every table in the admin has its right name: no "Shadow passs" or "Manual fixs"."""

from django.contrib import admin

# Every model of ours the admin lists, with its plural as the admin shows it.
PLURALS = {
    "catalog.advertiser": "advertisers",
    "catalog.membership": "memberships",
    "catalog.sitemap": "sitemaps",
    "catalog.listing": "listings",
    "catalog.imageasset": "image assets",
    "catalog.placement": "placements",
    "catalog.run": "runs",
    "classifier.modelversion": "model versions",
    "classifier.classification": "classifications",
    "classifier.detection": "detections",
    "classifier.occlusionmap": "occlusion maps",
    "classifier.trainingjob": "training jobs",
    "classifier.shadowpass": "shadow passes",
    "classifier.promotion": "promotions",
    "reviews.manualfix": "manual fixes",
    "reviews.datasetexport": "dataset exports",
    "reviews.exportitem": "export items",
    "reviews.exportexclusion": "export exclusions",
    "notifications.notificationsetting": "notification settings",
    "notifications.notification": "notifications",
}
OURS = {"catalog", "classifier", "reviews", "notifications"}
# Endings that an "s" added to a word ending in s, x, z, ch or sh, or in a consonant and y, gives ("passs", "fixs").
WRONG = ("ss", "xs", "zs", "chs", "shs", *(f"{consonant}ys" for consonant in "bcdfghjklmnpqrstvwxz"))


def test_every_registered_model_has_a_right_plural():
    registered = {model._meta.label_lower: str(model._meta.verbose_name_plural) for model in admin.site._registry}
    assert {label: plural for label, plural in registered.items() if label.split(".")[0] in OURS} == PLURALS
    wrong = {label: plural for label, plural in registered.items() if plural.lower().endswith(WRONG)}
    assert wrong == {}
