"""An undo puts back what was in effect before the change set: a fix back to the fix in effect then, or, where the
model's (or the scrape's) tag was, a withdrawal: no fix in effect, so a mistaken save that was undone is no human
label (not reviewed, not exported, not counted, no conflict side). History keeps both steps. The portal undoes only
what was made in the portal."""

import pytest
from django.urls import reverse

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Placement, Task
from classifier.models import Classification
from reviews.accuracy import local_accuracies
from reviews.effective_store import effective_tags_refresh
from reviews.exports.selectors import Filters, export_candidates
from reviews.expressions import disagreements
from reviews.grid import reviewed_q
from reviews.models import CONFIRMATION, ChangeSet, ManualFix
from reviews.models import EffectiveTag as StoredTag
from reviews.selectors import effective_tags
from reviews.services.decisions import review_decision_undo
from reviews.services.fixes import FixConflict, manual_fix_create, manual_fix_revert, review_decision_record
from tests.factories import ImageAssetFactory, ListingFactory, MembershipFactory, PlacementFactory, SitemapFactory
from tests.reviews.test_carry_forward_order import reencode, run_sync
from tests.reviews.test_effective_store import store_mismatches

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(register_tiny):
    return register_tiny()


def images(model, n=2):
    """n fetched images of one listing, the model's color on each (red, green, ...), their stored tags written."""
    sitemap = SitemapFactory()
    listing = ListingFactory(sitemap=sitemap)
    placements = []
    for i in range(n):
        placement = PlacementFactory(listing=listing, position=i, status="ok", asset=ImageAssetFactory())
        label = ("red", "green")[i % 2]
        Classification.objects.create(
            asset=placement.asset, model_version=model, task="color", label=label, confidence=0.9, margin=0.5,
            scores={label: 0.9},
        )  # fmt: skip
        placements.append(Placement.objects.select_related("listing__sitemap").get(pk=placement.pk))
    effective_tags_refresh(sitemap_id=sitemap.pk)
    return sitemap, placements


def stored(placement):
    row = StoredTag.objects.get(placement=placement, task=Task.COLOR)
    return row.label, row.source, StoredTag.objects.filter(reviewed_q(), pk=row.pk).exists()


def in_python(placement):
    tag = effective_tags([placement], [Task.COLOR])[placement.pk][Task.COLOR]
    return tag.label, tag.source


def exported(placement):
    """The label a new color export would take for the image (None: it is left out)."""
    rows = export_candidates(Filters(task=Task.COLOR)).filter(asset_id=placement.asset_id)
    return rows.values_list("new_label", flat=True).first()


def counted(placement):
    """How many reviewed tags local accuracy counts for the image's advertiser."""
    accuracy = local_accuracies().get((placement.listing.sitemap.advertiser_id, Task.COLOR))
    return accuracy.reviewed if accuracy else 0


def grid_save(client, realm, sitemap, placement, label, *more):
    """Saves the grid's changes (placement, label, placement, label...) as one change set."""
    pairs = [(placement, label), *zip(more[::2], more[1::2], strict=True)]
    client.post(
        reverse(f"reviews:{realm}-fixes", args=[sitemap.pk]),
        {"task": "color", "change": [f"{p.pk}:color:{text}" for p, text in pairs]},
        HTTP_HX_REQUEST="true",
    )
    return ChangeSet.objects.latest("id")


def test_a_grid_save_undone_leaves_the_models_tag_not_reviewed_not_exported_not_counted(admin_client, model):
    sitemap, [placement, _] = images(model)
    change_set = grid_save(admin_client, "staff", sitemap, placement, "Blue")
    assert stored(placement) == ("Blue", "fix", True)
    assert (exported(placement), counted(placement)) == ("Blue", 1)  # the save is a human label

    response = admin_client.post(reverse("reviews:staff-change-undo", args=[change_set.pk]))

    assert response.status_code == 302
    assert stored(placement) == ("red", "model", False)  # the model's tag again, not reviewed
    assert in_python(placement) == ("red", "model")
    assert (exported(placement), counted(placement)) == (None, 0)
    assert store_mismatches() == []
    withdrawal = ManualFix.objects.latest("id")
    assert (withdrawal.withdraws, withdrawal.old_label, withdrawal.new_label) == (True, "Blue", "")
    assert withdrawal.reverts.change_set == change_set
    assert withdrawal.change_set.undoes == change_set
    # History keeps both steps, who and when.
    history = admin_client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()
    assert "red → <strong>Blue</strong>" in history
    assert 'Blue → <em class="withdrawn">withdrawn: back to the model</em>' in history
    assert history.count("undo of change set") == 1


def test_an_undo_over_an_earlier_fix_puts_that_fix_back(admin_client, model):
    sitemap, [placement, other] = images(model)
    manual_fix_create(placement=placement, task="color", label="Black", user=None, source="advertiser")
    change_set = grid_save(admin_client, "staff", sitemap, placement, "Blue", other, "White")

    admin_client.post(reverse("reviews:staff-change-undo", args=[change_set.pk]))

    assert stored(placement) == ("Black", "fix", True)
    assert in_python(placement) == ("Black", "fix")
    assert exported(placement) == "Black"
    assert stored(other) == ("green", "model", False)  # the same set, over the model's tag: withdrawn
    back = ManualFix.objects.get(reverts__change_set=change_set, reverts__asset=placement.asset)
    assert (back.withdraws, back.old_label, back.new_label, back.reverts.change_set) == (
        False,
        "Blue",
        "Black",
        change_set,
    )
    assert store_mismatches() == []


def test_an_undo_of_an_undo_puts_the_fix_back(admin_client, model):
    sitemap, [placement, _] = images(model)
    change_set = grid_save(admin_client, "staff", sitemap, placement, "Blue")
    admin_client.post(reverse("reviews:staff-change-undo", args=[change_set.pk]))
    undo = ChangeSet.objects.get(kind="undo")

    admin_client.post(reverse("reviews:staff-change-undo", args=[undo.pk]))

    assert stored(placement) == ("Blue", "fix", True)
    assert store_mismatches() == []


def test_a_queue_decision_undone_puts_back_the_models_tag_or_the_earlier_fix(model):
    _, [on_model, on_fix] = images(model)
    manual_fix_create(placement=on_fix, task="color", label="Black", user=None, source="advertiser")
    decided = review_decision_record(placement=on_model, task="color", label="Blue", user=None)
    accepted = review_decision_record(placement=on_fix, task="color", label="Black", user=None)  # a confirmation
    assert [stored(p) for p in (on_model, on_fix)] == [("Blue", "fix", True), ("Black", "fix", True)]

    review_decision_undo(change_set=decided.change_set, user=None)
    review_decision_undo(change_set=accepted.change_set, user=None)

    assert [stored(p) for p in (on_model, on_fix)] == [("red", "model", False), ("Black", "fix", True)]
    assert (exported(on_model), exported(on_fix)) == (None, "Black")
    back = ManualFix.objects.latest("id")  # the confirmation settled the scope: its undo takes that back
    assert (back.new_label, back.settles, back.withdraws) == ("Black", False, False)
    assert store_mismatches() == []


def test_a_withdrawn_label_is_no_side_of_a_conflict(client, model):
    sitemap, [placement, _] = images(model)
    client.force_login(MembershipFactory(advertiser=sitemap.advertiser).user)
    own = grid_save(client, "portal", sitemap, placement, "Black")
    client.post(reverse("reviews:portal-change-undo", args=[own.pk]))
    assert stored(placement) == ("red", "model", False)

    manual_fix_create(placement=placement, task="color", label="Blue", user=None, source="staff")

    assert not disagreements().exists()  # the advertiser's Black was taken back: nothing contradicts staff's Blue


def test_the_portal_does_not_undo_a_staff_change_set(client, admin_client, model):
    sitemap, [staffs, own] = images(model)
    editor = MembershipFactory(advertiser=sitemap.advertiser).user
    staff_set = grid_save(admin_client, "staff", sitemap, staffs, "Blue")
    client.force_login(editor)
    own_set = grid_save(client, "portal", sitemap, own, "Black")

    listed = client.get(reverse("reviews:portal-changes"))

    assert [(row.pk, undoable) for row, undoable in listed.context["rows"]] == [
        (own_set.pk, True),
        (staff_set.pk, False),
    ]
    html = listed.content.decode()
    assert reverse("reviews:portal-change-undo", args=[own_set.pk]) in html
    assert reverse("reviews:portal-change-undo", args=[staff_set.pk]) not in html
    assert client.post(reverse("reviews:portal-change-undo", args=[staff_set.pk])).status_code == 403
    assert stored(staffs) == ("Blue", "fix", True)
    assert not ChangeSet.objects.filter(kind="undo").exists()

    assert client.post(reverse("reviews:portal-change-undo", args=[own_set.pk])).status_code == 302
    assert stored(own) == ("green", "model", False)
    # Staff may undo any change set, the advertiser's too.
    assert admin_client.post(reverse("reviews:staff-change-undo", args=[staff_set.pk])).status_code == 302
    assert stored(staffs) == ("red", "model", False)
    assert (staff_set.source, own_set.source) == ("staff", "advertiser")


@pytest.mark.django_db(transaction=True)
def test_a_withdrawn_fix_is_not_carried_to_a_copy():
    photos = make_inventory_images(2, seed=53)
    with InventoryServer(images=list(photos), images_per_listing=1) as cdn:
        sitemap = SitemapFactory(url=cdn.sitemap_url)
        run_sync(sitemap)
        original = Placement.objects.select_related("listing__sitemap").get(url=cdn.image_url(0))
        fix = manual_fix_create(placement=original, task="color", label="Burgundy", user=None, source="advertiser")
        manual_fix_revert(fix=fix, user=None, source="staff")  # no fix was in effect before it: withdrawn

        cdn.images[0] = reencode(photos[0], quality=70, scale=0.8)  # a re-encoded copy under a new name
        cdn.rename()
        run = run_sync(sitemap)  # succeeds: nothing to carry
        copy = Placement.objects.get(url=cdn.image_url(0))

    assert copy.asset_id != original.asset_id
    assert not ManualFix.objects.filter(asset_id=copy.asset_id).exists()
    assert run.status == run.Status.SUCCEEDED


def test_only_the_fix_in_effect_is_reverted_and_a_withdrawal_is_no_confirmation(admin_client, model):
    _, [placement, other] = images(model)
    blue = manual_fix_create(placement=placement, task="color", label="Blue", user=None, source="staff")
    black = manual_fix_create(placement=placement, task="color", label="Black", user=None, source="staff")

    # Putting back what was before Blue would drop Black, made since: refused, and Black stays in effect.
    with pytest.raises(FixConflict):
        manual_fix_revert(fix=blue, user=None, source="staff")
    page = admin_client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()
    assert page.count(">Revert</button>") == 1  # on Black, the fix in effect, not on Blue
    assert in_python(placement) == ("Black", "fix")

    back = manual_fix_revert(fix=black, user=None, source="staff")
    assert (back.new_label, back.withdraws, in_python(placement)) == ("Blue", False, ("Blue", "fix"))

    only = manual_fix_create(placement=other, task="color", label="Blue", user=None, source="staff")
    withdrawal = manual_fix_revert(fix=only, user=None, source="staff")
    assert (withdrawal.withdraws, withdrawal.is_confirmation) == (True, False)
    assert in_python(other) == ("green", "model")
    assert store_mismatches() == []


@pytest.mark.django_db
def test_a_confirmation_is_one_rule_in_python_and_sql():
    """ManualFix.is_confirmation and its SQL side (CONFIRMATION) pick the same rows: a fix to the label in effect is
    one; a change, a first label and a withdrawal (even of a confirmation) are not."""
    asset, advertiser = ImageAssetFactory(), SitemapFactory().advertiser

    def add(old, new, **kwargs):
        return ManualFix.objects.create(
            advertiser=advertiser, asset=asset, task="color", old_label=old, new_label=new, **kwargs
        )

    agreed = add("Red", "Red")
    rows = [agreed, add("Red", "Blue"), add("", "Blue"), add("Red", "", withdraws=True, reverts=agreed)]

    in_sql = set(ManualFix.objects.filter(CONFIRMATION).values_list("pk", flat=True))
    assert in_sql == {row.pk for row in rows if row.is_confirmation} == {agreed.pk}
