"""The advertiser portal's home: failed and unreviewed images per sitemap (the counts the grid's filters find), staff
decisions on the advertiser's own labels, the image types with examples from their own inventory, and pictures
served by image within the portal's scope."""

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from catalog.models import Run
from reviews.portal_selectors import label_examples, sitemaps_attention, staff_decisions
from tests.factories import MembershipFactory, RunFactory, SitemapFactory, UserFactory

from .portal_helpers import advertiser_fix, image_type_model, staff_decision, tagged, unfetched

pytestmark = pytest.mark.django_db


@pytest.fixture
def model():
    return image_type_model()


@pytest.fixture
def world(model):
    """Advertiser "mine" (two sitemaps) and a stranger with failures, fixes and decisions of its own."""
    first = SitemapFactory(name="Used cars")
    advertiser = first.advertiser
    second = SitemapFactory(advertiser=advertiser, name="New cars")
    dealer = tagged(first, model, "Dealer")  # not reviewed
    stock = tagged(first, model, "Stock")
    advertiser_fix(stock, "Dealer")  # reviewed: a fix of theirs in effect
    broken = tagged(first, model, None, error="model resnet-internal-v7 could not be loaded")  # failed
    missing = unfetched(first)  # failed: no picture
    tagged(first, model, "Placeholder", is_gone=True)  # gone: not counted anywhere
    new = tagged(second, model, "Stock")
    theirs = SitemapFactory(name="Someone else's")
    stranger = [tagged(theirs, model, "Placeholder"), unfetched(theirs), tagged(theirs, model, None)]
    user = MembershipFactory(advertiser=advertiser, user=UserFactory(username="dealer")).user
    return {
        "user": user, "first": first, "second": second, "theirs": theirs, "dealer": dealer, "stock": stock,
        "broken": broken, "missing": missing, "new": new, "stranger": stranger,
    }  # fmt: skip


def mine(world):
    return SitemapFactory._meta.model.objects.filter(advertiser=world["first"].advertiser).order_by("id")


def test_each_sitemap_counts_its_failed_and_unreviewed_live_images(world):
    rows = sitemaps_attention(sitemaps=mine(world))

    counts = [(row.sitemap, row.images, row.failed, row.unreviewed) for row in rows]
    assert counts == [(world["first"], 4, 2, 3), (world["second"], 1, 0, 1)]


def test_the_failed_count_is_what_the_grid_link_finds(client, world):
    client.force_login(world["user"])
    first = world["first"]

    home = client.get(reverse("reviews:portal-home"))

    grid_url = reverse("reviews:portal-grid", args=[first.pk])
    html = home.content.decode()
    assert f'href="{grid_url}?failed=1">2 failed</a>' in html
    assert f'href="{grid_url}?reviewed=no">3 to review</a>' in html
    grid = client.get(grid_url, {"failed": "1"})
    assert {item.placement for item in grid.context["page"].items} == {world["broken"], world["missing"]}


def test_the_home_totals_and_the_last_runs_failures(client, world):
    run = RunFactory(sitemap=world["first"], status=Run.Status.PARTIAL, failed=1)
    client.force_login(world["user"])

    html = client.get(reverse("reviews:portal-home")).content.decode()

    assert '<li id="failed-total" class="bad"><strong>2</strong> images failed</li>' in html
    assert "<strong>4</strong> of 5 images not reviewed yet" in html
    grid_url = reverse("reviews:portal-grid", args=[world["first"].pk])
    assert f'href="{grid_url}?run={run.pk}&amp;outcome=failed">1 failed in that run</a>' in html
    assert "not read yet" in html  # the second sitemap has no Run


def test_the_home_shows_nothing_of_another_advertiser(client, world):
    client.force_login(world["user"])

    html = client.get(reverse("reviews:portal-home")).content.decode()

    assert str(world["theirs"]) not in html
    for placement in world["stranger"]:
        assert reverse("reviews:portal-thumbnail", args=[placement.pk]) not in html
        assert reverse("reviews:portal-image", args=[placement.pk]) not in html


def test_staff_decisions_on_the_advertisers_own_labels_latest_first(world, model):
    first, stock, dealer = world["first"], world["stock"], world["dealer"]
    changed = staff_decision(stock, "Stock")  # the advertiser said Dealer: changed
    advertiser_fix(dealer, "Dealer")
    confirmed = staff_decision(dealer, "Dealer")  # the advertiser said Dealer too: confirmed
    staff_decision(world["new"], "Dealer")  # the advertiser never labelled it: not its label, not shown
    stranger = world["stranger"][0]
    advertiser_fix(stranger, "Dealer")
    staff_decision(stranger, "Stock")  # another advertiser's

    decisions = staff_decisions(sitemaps=mine(world))

    assert [(d.fix, d.your_label, d.confirmed, d.placement_id) for d in decisions] == [
        (confirmed, "Dealer", True, dealer.pk),
        (changed, "Dealer", False, stock.pk),
    ]
    assert first.advertiser_id == changed.advertiser_id


def test_the_home_lists_decisions_with_the_picture_and_old_to_new(client, world):
    decision = staff_decision(world["stock"], "Stock")
    client.force_login(world["user"])

    html = client.get(reverse("reviews:portal-home")).content.decode()

    assert "Dealer → <strong>Stock</strong>" in html
    assert "changed your label" in html
    assert f'src="{reverse("reviews:portal-thumbnail", args=[world["stock"].pk])}"' in html
    assert decision.created_at.strftime("%Y-%m-%d") in html
    assert "<strong>1</strong> staff decision on your labels" in html


def test_each_image_type_has_an_example_from_the_advertisers_own_inventory(client, world):
    examples = {example.label: example.placement_id for example in label_examples(sitemaps=mine(world))}

    # The stock one is fixed to Dealer: the effective tag counts. The stranger's Placeholder is not an example.
    assert examples["Dealer"] in (world["dealer"].pk, world["stock"].pk)
    assert examples["Stock"] == world["new"].pk
    assert examples["Placeholder"] is None

    client.force_login(world["user"])
    html = client.get(reverse("reviews:portal-home")).content.decode()
    assert "no example yet" in html
    assert f'src="{reverse("reviews:portal-thumbnail", args=[world["new"].pk])}"' in html
    assert "Stock</strong>: A computer-generated" in html


def test_the_home_reads_in_a_constant_number_of_queries(client, world, model, django_assert_max_num_queries):
    RunFactory(sitemap=world["first"], failed=1, status=Run.Status.PARTIAL)
    client.force_login(world["user"])
    with django_assert_max_num_queries(20) as few:
        client.get(reverse("reviews:portal-home"))
    for n in range(3):
        sitemap = SitemapFactory(advertiser=world["first"].advertiser)
        RunFactory(sitemap=sitemap, failed=1, status=Run.Status.PARTIAL)
        placement = tagged(sitemap, model, "Stock")
        advertiser_fix(placement, "Dealer")
        staff_decision(placement, "Placeholder" if n % 2 else "Dealer")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(reverse("reviews:portal-home")).status_code == 200


def test_the_root_sends_an_advertiser_to_the_portal_home_and_staff_to_theirs(client, world):
    client.force_login(world["user"])
    assert client.get("/").url == reverse("reviews:portal-home")
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/").url == reverse("reviews:staff-advertisers")


def test_a_user_without_inventory_is_told_so(client):
    client.force_login(UserFactory())
    html = client.get(reverse("reviews:portal-home")).content.decode()
    assert "No inventory is shared with you yet." in html


def test_portal_pictures_are_served_by_image_within_the_portals_scope(client, world):
    dealer = world["dealer"]
    thumbnail = reverse("reviews:portal-thumbnail", args=[dealer.pk])
    original = reverse("reviews:portal-original", args=[dealer.pk])

    assert client.get(thumbnail).url.startswith(reverse("login"))  # anonymous: log in first
    client.force_login(world["user"])
    response = client.get(thumbnail)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == default_storage.open(dealer.asset.thumbnail.name).read()
    assert client.get(original).status_code == 200
    assert client.get(reverse("reviews:portal-thumbnail", args=[world["missing"].pk])).status_code == 404

    client.force_login(MembershipFactory(advertiser=world["theirs"].advertiser).user)
    assert client.get(thumbnail).status_code == 404  # another advertiser's image: as if it did not exist
    assert client.get(original).status_code == 404
