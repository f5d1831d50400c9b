"""Review by cluster: one decision tags every image of a near-duplicate cluster, in one advertiser's scope only."""

import pytest
from django.urls import reverse

from catalog.models import ImageAsset, Membership
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from reviews.services.clusters import cluster_fix_apply
from reviews.services.fixes import FixError
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    SitemapFactory,
    UserFactory,
)
from tests.reviews.test_crosscheck import active_model, photo

pytestmark = pytest.mark.django_db


def cluster(*assets):
    """Puts the assets in one near-duplicate cluster whose root is the first."""
    ImageAsset.objects.filter(pk__in=[a.pk for a in assets]).update(cluster_id=assets[0].pk)
    return assets[0].pk


@pytest.fixture
def model():
    return active_model("image_type", "color")


@pytest.fixture
def shared(model):
    """Advertisers A and B share a cluster of three copies: A shows the first two, B the last two."""
    copies = [ImageAssetFactory() for _ in range(3)]
    cluster_id = cluster(*copies)
    a, b = SitemapFactory(), SitemapFactory()
    mine = [photo(ListingFactory(sitemap=a), model, "Red", asset=asset) for asset in copies[:2]]
    mine.append(photo(ListingFactory(sitemap=a), model, "Red", asset=copies[0]))  # the same photo in two listings
    theirs = [photo(ListingFactory(sitemap=b), model, "Red", asset=asset) for asset in copies[1:]]
    alone = photo(ListingFactory(sitemap=a), model, "Red")
    return {"cluster": cluster_id, "a": a, "b": b, "mine": mine, "theirs": theirs, "alone": alone, "copies": copies}


def fixes_of(sitemap):
    return set(ManualFix.objects.filter(advertiser_id=sitemap.advertiser_id).values_list("asset_id", "new_label"))


def test_an_advertisers_editor_tags_the_cluster_in_its_own_scope_only(client, shared):
    editor = UserFactory()
    MembershipFactory(user=editor, advertiser=shared["a"].advertiser, role=Membership.Role.EDITOR)
    client.force_login(editor)

    response = client.post(
        reverse("reviews:portal-cluster-fix", args=[shared["a"].pk]),
        {"cluster": shared["cluster"], "task": "color", "label": "Blue"},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200
    assert "2 tags changed" in response.content.decode()  # one fix per image, not per placement
    copies = shared["copies"]
    assert fixes_of(shared["a"]) == {(copies[0].pk, "Blue"), (copies[1].pk, "Blue")}
    assert fixes_of(shared["b"]) == set()  # B shares the cluster and copies[1]: its scope is untouched
    assert set(ManualFix.objects.values_list("source", "user__username")) == {("advertiser", editor.username)}


def test_an_advertiser_cannot_tag_through_another_advertisers_sitemap(client, shared):
    editor = UserFactory()
    MembershipFactory(user=editor, advertiser=shared["a"].advertiser)
    client.force_login(editor)

    response = client.post(
        reverse("reviews:portal-cluster-fix", args=[shared["b"].pk]),
        {"cluster": shared["cluster"], "task": "color", "label": "Blue"},
    )

    assert response.status_code == 404
    assert client.get(reverse("reviews:portal-clusters", args=[shared["b"].pk])).status_code == 404
    assert not ManualFix.objects.exists()


def test_a_viewer_sees_the_clusters_but_cannot_tag_them(client, shared):
    viewer = UserFactory()
    MembershipFactory(user=viewer, advertiser=shared["a"].advertiser, role=Membership.Role.VIEWER)
    client.force_login(viewer)

    page = client.get(reverse("reviews:portal-clusters", args=[shared["a"].pk]))
    assert page.status_code == 200
    assert 'data-editable="0"' in page.content.decode()
    assert "cluster-fix" not in page.content.decode()

    response = client.post(
        reverse("reviews:portal-cluster-fix", args=[shared["a"].pk]),
        {"cluster": shared["cluster"], "task": "color", "label": "Blue"},
    )
    assert response.status_code == 403
    with pytest.raises(FixError):
        cluster_fix_apply(
            sitemap=shared["a"],
            cluster_id=shared["cluster"],
            task="color",
            label="Blue",
            user=viewer,
            source="advertiser",
        )
    assert not ManualFix.objects.exists()


def test_staff_tag_a_cluster_from_either_sitemap_in_that_sitemaps_advertiser_scope(shared):
    staff = UserFactory(is_staff=True)
    created = cluster_fix_apply(
        sitemap=shared["b"], cluster_id=shared["cluster"], task="image_type", label="stock", user=staff, source="staff"
    )
    copies = shared["copies"]
    assert {(f.asset_id, f.new_label, f.note) for f in created} == {
        (copies[1].pk, "Stock", f"cluster {shared['cluster']} tagged as one"),
        (copies[2].pk, "Stock", f"cluster {shared['cluster']} tagged as one"),
    }
    assert fixes_of(shared["a"]) == set()
    # Again: the label is in effect now, nothing more to record.
    assert (
        cluster_fix_apply(
            sitemap=shared["b"],
            cluster_id=shared["cluster"],
            task="image_type",
            label="Stock",
            user=staff,
            source="staff",
        )
        == []
    )


def test_bad_input_is_refused_with_a_reason(client, shared):
    staff = UserFactory(is_staff=True)
    with pytest.raises(FixError, match="not a color label"):
        cluster_fix_apply(
            sitemap=shared["a"], cluster_id=shared["cluster"], task="color", label="Plaid", user=staff, source="staff"
        )
    with pytest.raises(FixError, match="shows no image of cluster"):
        cluster_fix_apply(
            sitemap=shared["a"],
            cluster_id=shared["copies"][2].pk,
            task="color",
            label="Blue",
            user=staff,
            source="staff",
        )  # a member asset's own id is not its cluster's id

    client.force_login(staff)
    url = reverse("reviews:staff-cluster-fix", args=[shared["a"].pk])
    answer = client.post(url, {"cluster": shared["cluster"], "task": "color", "label": "Plaid"}, HTTP_HX_REQUEST="true")
    assert "not a color label" in answer.content.decode()
    assert client.post(url, {"cluster": "x", "task": "color", "label": "Red"}).status_code == 400
    assert client.get(url).status_code == 405
    assert not ManualFix.objects.exists()


def test_the_cluster_view_lists_the_biggest_clusters_first_in_constant_queries(
    client, model, shared, django_assert_max_num_queries
):
    client.force_login(UserFactory(is_staff=True))
    url = reverse("reviews:staff-clusters", args=[shared["a"].pk])
    with django_assert_max_num_queries(14) as few:
        page = client.get(url, {"task": "color"})
    rows = page.context["page"].rows
    assert [(row.picture, row.size) for row in rows] == [(shared["cluster"], 3), (shared["alone"].asset_id, 1)]
    assert rows[0].label_counts == [("Red", 3)]
    assert [member.placement for member in rows[0].members] == shared["mine"]

    large = SitemapFactory()
    for _ in range(15):
        copies = [ImageAssetFactory() for _ in range(3)]
        cluster(*copies)
        for asset in copies:
            photo(ListingFactory(sitemap=large), model, "Green", asset=asset)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(reverse("reviews:staff-clusters", args=[large.pk]), {"task": "color"})
    assert len(page.context["page"].rows) == 15
    assert page.content.decode().count('class="cluster-row"') == 15

    one = client.get(url, {"task": "color", "cluster": shared["cluster"]})
    assert [row.picture for row in one.context["page"].rows] == [shared["cluster"]]


def test_a_big_cluster_shows_its_first_members_and_counts_them_all(client, model):
    sitemap = SitemapFactory()
    asset = ImageAssetFactory()
    listings = [ListingFactory(sitemap=sitemap) for _ in range(20)]
    for listing in listings:
        PlacementFactory(listing=listing, status="ok", asset=asset)
    effective_tags_refresh()  # rows made here, not by the services: the stored tags follow
    client.force_login(UserFactory(is_staff=True))
    page = client.get(reverse("reviews:staff-clusters", args=[sitemap.pk]), {"task": "image_type"})
    (row,) = page.context["page"].rows
    assert (row.size, len(row.members), row.hidden) == (20, 12, 8)
    assert row.label_counts == [("—", 20)]  # not classified yet
    assert "+8 more" in page.content.decode()


def test_the_grid_badges_cards_of_pictures_shown_twice_or_more(client, shared):
    client.force_login(UserFactory(is_staff=True))
    page = client.get(reverse("reviews:staff-grid", args=[shared["a"].pk]), {"task": "color"})
    html = page.content.decode()
    sizes = {item.placement.pk: item.cluster_size for item in page.context["page"].items}
    assert sizes == {**{p.pk: 3 for p in shared["mine"]}, shared["alone"].pk: 1}
    assert html.count('class="cluster-badge"') == 3
    cluster_url = reverse("reviews:staff-clusters", args=[shared["a"].pk])
    assert f'href="{cluster_url}?cluster={shared["cluster"]}&amp;task=color"' in html
    assert "Review by cluster" in html
