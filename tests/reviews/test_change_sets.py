"""Change sets: a reviewer action recorded as one set of fixes, undone as a whole with new fixes (history stays
append-only), once, skipping the tags someone changed since; advertisers see and undo their own only."""

import pytest
from django.urls import reverse

from catalog.models import Membership, Placement
from classifier.models import Classification
from reviews.effective_store import effective_tags_refresh
from reviews.models import ChangeSet, ManualFix
from reviews.selectors import effective_tags
from reviews.services.change_sets import change_set_apply, change_set_undo, change_sets_visible_to
from reviews.services.fixes import Change, FixError, manual_fix_create, review_decision_record
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    SitemapFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(register_tiny):
    return register_tiny()


def images(n, model, sitemap=None):
    sitemap = sitemap or SitemapFactory()
    listing = ListingFactory(sitemap=sitemap)
    placements = []
    for i in range(n):
        placement = PlacementFactory(listing=listing, position=i, status="ok", asset=ImageAssetFactory())
        label = ("red", "green", "blue")[i % 3]
        Classification.objects.create(
            asset=placement.asset, model_version=model, task="color", label=label, confidence=0.9, margin=0.5,
            scores={label: 0.9},
        )  # fmt: skip
        placements.append(Placement.objects.select_related("listing__sitemap").get(pk=placement.pk))
    effective_tags_refresh(sitemap_id=sitemap.pk)  # rows made outside the pipeline's writers
    return sitemap, placements


def colors(placements):
    tags = effective_tags(placements, {"color"})
    return [tags[p.pk]["color"].label for p in placements]


def save(placements, labels, user, confirm=(), source="staff"):
    advertiser_id = placements[0].listing.sitemap.advertiser_id
    return change_set_apply(
        kind=ChangeSet.Kind.SAVE, advertiser_id=advertiser_id, user=user, source=source, summary="a save",
        changes=[Change(p, "color", label) for p, label in zip(placements, labels, strict=False) if label],
        confirmations=[Change(p, "color", colors([p])[0]) for p in confirm],
    )  # fmt: skip


def test_a_save_is_one_change_set_of_its_fixes_and_its_confirmations(model):
    staff = UserFactory(is_staff=True)
    _, placements = images(4, model)  # red, green, blue, red

    change_set = save(placements, ["Blue", "Green", "", ""], staff, confirm=[placements[2], placements[0]])

    fixes = list(change_set.fix_rows.order_by("id"))
    assert (change_set.kind, change_set.fixes, change_set.user, change_set.summary) == ("save", 2, staff, "a save")
    # Green on a green image changes nothing; placements[0] is changed, so its confirmation is left out.
    assert [(f.asset_id, f.old_label, f.new_label) for f in fixes] == [
        (placements[0].asset_id, "red", "Blue"),
        (placements[2].asset_id, "Blue", "Blue"),
    ]
    assert [f.is_confirmation for f in fixes] == [False, True]
    assert save(placements, ["", "Green", "", ""], staff) is None  # nothing changed: no change set recorded
    assert ChangeSet.objects.count() == 1


def test_a_change_set_belongs_to_one_advertiser(model):
    _, mine = images(1, model)
    _, theirs = images(1, model)
    with pytest.raises(FixError, match="not the advertiser's"):
        change_set_apply(
            kind="save", advertiser_id=mine[0].listing.sitemap.advertiser_id, user=None, source="staff",
            changes=[Change(mine[0], "color", "Blue"), Change(theirs[0], "color", "Blue")],
        )  # fmt: skip
    assert not ManualFix.objects.exists()
    assert not ChangeSet.objects.exists()


def test_undo_writes_new_fixes_back_in_a_change_set_of_its_own(model):
    staff, other = UserFactory(is_staff=True), UserFactory(is_staff=True, username="undoer")
    _, placements = images(3, model)
    save(placements, ["Black", "Grey", "Orange"], staff)  # fixes in effect before the set
    change_set = save(placements, ["Blue", "Yellow", "White"], staff)
    assert colors(placements) == ["Blue", "Yellow", "White"]

    result = change_set_undo(change_set=change_set, user=other, source="staff")

    assert colors(placements) == ["Black", "Grey", "Orange"]  # the fixes the save replaced
    undo = result.change_set
    assert (undo.kind, undo.undoes, undo.fixes, undo.user) == ("undo", change_set, 3, other)
    assert (result.written, result.withdrawn, result.skipped) == (3, 0, 0)
    backs = list(undo.fix_rows.order_by("id"))
    assert [(f.old_label, f.new_label, f.withdraws, f.reverts.change_set_id) for f in backs] == [
        ("Blue", "Black", False, change_set.pk), ("Yellow", "Grey", False, change_set.pk),
        ("White", "Orange", False, change_set.pk),
    ]  # fmt: skip
    assert ManualFix.objects.count() == 9  # history kept: the saves' fixes are still there
    change_set.refresh_from_db()
    assert change_set.undone_by == undo


def test_undo_skips_the_tags_someone_changed_since_and_says_how_many(model):
    staff = UserFactory(is_staff=True)
    _, placements = images(3, model)
    change_set = save(placements, ["Blue", "Yellow", "White"], staff)
    manual_fix_create(placement=placements[1], task="color", label="Pink", user=staff, source="advertiser")

    result = change_set_undo(change_set=change_set, user=staff, source="staff")

    assert colors(placements) == ["red", "Pink", "blue"]  # the advertiser's later Pink stays
    assert (result.written, result.changed_since, result.skipped) == (2, 1, 1)
    assert "2 tags set back (2 with no fix any more: the model's or the scrape's tag); 1 skipped (1 changed by" in (
        result.message()
    )


def test_a_change_set_is_undone_once(model):
    staff = UserFactory(is_staff=True)
    _, placements = images(2, model)
    change_set = save(placements, ["Blue", "Yellow"], staff)
    change_set_undo(change_set=change_set, user=staff, source="staff")
    fixes = ManualFix.objects.count()

    with pytest.raises(FixError, match="undone already"):
        change_set_undo(change_set=change_set, user=staff, source="staff")
    assert ManualFix.objects.count() == fixes
    assert ChangeSet.objects.filter(kind="undo").count() == 1


def test_nothing_to_set_back_records_nothing(model):
    staff = UserFactory(is_staff=True)
    _, placements = images(3, model)
    save(placements[:2], ["Black", "Grey"], staff)
    confirmed = save(placements[:2], ["", ""], staff, confirm=placements[:2])  # the fixes in effect, confirmed
    changed = save(placements[2:], ["White"], staff)
    manual_fix_create(placement=placements[2], task="color", label="Pink", user=staff, source="staff")

    with pytest.raises(FixError, match="2 confirmations"):
        change_set_undo(change_set=confirmed, user=staff, source="staff")
    with pytest.raises(FixError, match="1 changed by someone since"):
        change_set_undo(change_set=changed, user=staff, source="staff")
    assert not ChangeSet.objects.filter(kind="undo").exists()


def test_advertisers_see_and_undo_their_own_change_sets_only(client, model):
    mine, my_placements = images(2, model)
    _, their_placements = images(2, model)
    editor = MembershipFactory(advertiser=mine.advertiser).user
    viewer = MembershipFactory(advertiser=mine.advertiser, role=Membership.Role.VIEWER).user
    my_set = save(my_placements, ["Blue", "Yellow"], editor, source="advertiser")
    their_set = save(their_placements, ["Blue", "Yellow"], UserFactory(is_staff=True))

    assert list(change_sets_visible_to(editor)) == [my_set]
    client.force_login(editor)
    listed = client.get(reverse("reviews:portal-changes"))
    assert [row for row, _ in listed.context["rows"]] == [my_set]
    assert [undoable for _, undoable in listed.context["rows"]] == [True]
    assert client.post(reverse("reviews:portal-change-undo", args=[their_set.pk])).status_code == 404
    assert client.post(reverse("reviews:staff-change-undo", args=[their_set.pk])).status_code == 403
    assert client.get(reverse("reviews:staff-changes")).status_code == 403
    assert colors(their_placements) == ["Blue", "Yellow"]

    client.force_login(viewer)
    assert client.post(reverse("reviews:portal-change-undo", args=[my_set.pk])).status_code == 403
    assert [undoable for _, undoable in client.get(reverse("reviews:portal-changes")).context["rows"]] == [False]
    assert colors(my_placements) == ["Blue", "Yellow"]

    client.force_login(editor)
    response = client.post(reverse("reviews:portal-change-undo", args=[my_set.pk]), {"next": "https://evil.example/"})
    assert response.status_code == 302
    assert response.url == reverse("reviews:portal-changes")  # not to another site
    assert colors(my_placements) == ["red", "green"]
    undo = ChangeSet.objects.get(kind="undo")
    assert set(undo.fix_rows.values_list("source", flat=True)) == {"advertiser"}
    assert [undoable for _, undoable in client.get(reverse("reviews:portal-changes")).context["rows"]] == [True, False]


def test_staff_list_every_advertisers_changes_or_one_sitemaps(admin_client, model):
    one, placements = images(2, model)
    _, others = images(1, model)
    first = save(placements, ["Blue", ""], None)
    second = save(others, ["Blue"], None)

    everything = admin_client.get(reverse("reviews:staff-changes"))
    assert [row for row, _ in everything.context["rows"]] == [second, first]
    of_one = admin_client.get(reverse("reviews:staff-changes"), {"sitemap": one.pk})
    assert [row for row, _ in of_one.context["rows"]] == [first]
    assert "Undo" in of_one.content.decode()


def test_the_grid_records_each_save_as_a_change_set_and_offers_its_undo(admin_client, model):
    sitemap, placements = images(3, model)
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])

    response = admin_client.post(
        url,
        {"task": "color", "change": [f"{placements[0].pk}:color:Blue"], "confirm": [f"{placements[1].pk}:color:green"]},
        HTTP_HX_REQUEST="true",
    )

    change_set = ChangeSet.objects.get()
    assert (change_set.kind, change_set.fixes) == ("save", 2)
    assert set(change_set.fix_rows.values_list("asset_id", "new_label")) == {
        (placements[0].asset_id, "Blue"),
        (placements[1].asset_id, "Green"),
    }
    html = response.content.decode()
    assert f'data-undo-url="{reverse("reviews:staff-change-undo", args=[change_set.pk])}"' in html
    assert "1 tag changed, 1 marked reviewed" in html


def test_a_bulk_retag_of_the_filter_writes_only_with_a_token_for_that_filter_and_count(admin_client, model):
    sitemap, placements = images(6, model)  # two of each color
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])
    bulk = {"task": "color", "label": "red", "bulk_label": "White", "bulk_task": "color", "select_all": "filter"}

    step = admin_client.post(url, bulk)
    assert (step.context["bulk"].count, step.context["problem"]) == (2, "")
    assert [p.pk for p in step.context["sample"]] == [placements[0].pk, placements[3].pk]
    token = step.context["token"]
    assert not ManualFix.objects.exists()

    other_filter = admin_client.post(url, {**bulk, "label": "green", "bulk_token": token})
    assert "filter or the label changed" in other_filter.context["problem"]
    other_label = admin_client.post(url, {**bulk, "bulk_label": "Black", "bulk_token": token})
    assert "filter or the label changed" in other_label.context["problem"]
    forged = admin_client.post(url, {**bulk, "bulk_token": token[:-2] + "xx"})
    assert "not valid" in forged.context["problem"]
    manual_fix_create(placement=placements[5], task="color", label="Red", user=None, source="staff")  # a third red
    recounted = admin_client.post(url, {**bulk, "bulk_token": token})
    assert "now matches 3 images, not the 2 you confirmed" in recounted.context["problem"]
    assert ManualFix.objects.count() == 1  # only the fix made meanwhile

    done = admin_client.post(url, {**bulk, "bulk_token": recounted.context["token"]})
    assert done.status_code == 302
    change_set = ChangeSet.objects.get(kind="bulk")
    assert change_set.fixes == 3
    assert "on all 3 images of label=red, task=color" in change_set.summary
    assert colors(placements) == ["White", "green", "blue", "White", "green", "White"]


def test_queue_decisions_are_change_sets_staff_undo_from_recent_changes_and_the_portal_does_not_list(client, model):
    sitemap, placements = images(2, model)
    staff = UserFactory(is_staff=True)
    decided = review_decision_record(placement=placements[0], task="color", label="Blue", user=staff)
    kept = review_decision_record(placement=placements[1], task="color", label="green", user=staff)
    editor = MembershipFactory(advertiser=sitemap.advertiser).user

    client.force_login(editor)
    assert [row for row, _ in client.get(reverse("reviews:portal-changes")).context["rows"]] == []
    assert client.post(reverse("reviews:portal-change-undo", args=[decided.change_set_id])).status_code == 404

    client.force_login(staff)
    listed = client.get(reverse("reviews:staff-changes"))
    assert [row.pk for row, _ in listed.context["rows"]] == [kept.change_set_id, decided.change_set_id]
    client.post(reverse("reviews:staff-change-undo", args=[decided.change_set_id]))
    client.post(reverse("reviews:staff-change-undo", args=[kept.change_set_id]))  # a confirmation: withdrawn too
    assert colors(placements) == ["red", "green"]  # the model's tags again
    undone = ChangeSet.objects.filter(kind="undo").order_by("id")
    assert [(u.undoes_id, u.fixes) for u in undone] == [(decided.change_set_id, 1), (kept.change_set_id, 1)]
    assert [f.withdraws for u in undone for f in u.fix_rows.all()] == [True, True]
