"""Heads scoped to one advertiser (classifier.services.scoped): a scoped head answers its task for its advertiser's
placements only, in the one rule (SQL and Python), the stored tags, the API and the image page; a picture two
advertisers share keeps each advertiser's own answer; its shadow pass, promotion and rollback are its advertiser's;
new images of its advertiser's Runs get its answer; nothing changes for anyone else."""

import re

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Membership, Placement, Task
from classifier.models import Classification, ModelHead, ModelVersion, Promotion, ScopedHead, TrainingJob
from classifier.services.promotion import (
    PromotionError,
    model_promote,
    model_rollback,
    promotion_tasks,
    rollback_plan,
)
from classifier.services.scoped import ScopedError, scoped_rollback
from classifier.services.shadow import shadow_run, shadow_start
from classifier.services.training import TrainingError, scope_manifest, training_start
from reviews.effective_store import fresh_rows
from reviews.expressions import active_heads
from reviews.health import review_queue
from reviews.models import EffectiveTag
from tests.factories import MembershipFactory, SitemapFactory, UserFactory
from tests.reviews import test_effective_store
from tests.reviews.test_effective_store import run_sync, store_mismatches

pytestmark = pytest.mark.django_db(transaction=True)
among_many = test_effective_store.among_many  # a sitemap of 3,000 images among 10,000 others (PostgreSQL only)


def scoped_version(register_tiny, *, parent: ModelVersion, advertiser, name: str = "tiny for one") -> ModelVersion:
    """A color head for one advertiser that answers otherwise than the parent (the smallest channel, not the largest),
    as training registers it: a candidate with its advertiser and its training job."""
    version = register_tiny(name=name, activate=False, color_gain=-1.0)
    job = TrainingJob.objects.create(task=Task.COLOR, parent=parent, export_id=1, advertiser=advertiser, manifest={})
    ModelVersion.objects.filter(pk=version.pk).update(advertiser=advertiser, parent=parent, training_job=job)
    version.refresh_from_db()
    return version


@pytest.fixture
def shared(register_tiny):
    """Two advertisers whose sitemaps list the same 6 pictures (one CDN), read and classified by real Runs."""
    model = register_tiny()
    with InventoryServer(images=list(make_inventory_images(6, seed=11)), images_per_listing=2) as server:
        ours = SitemapFactory(url=server.sitemap_url)
        theirs = SitemapFactory(url=server.sitemap_url + "?theirs")
        run_sync(ours)
        run_sync(theirs)
        yield {"model": model, "ours": ours, "theirs": theirs, "server": server}


def stored_colors(sitemap) -> dict[int, tuple[str | None, int | None]]:
    """asset -> (stored color label, the model version that answered) of the sitemap's placements."""
    return {
        row.asset_id: (row.label, row.model_version_id)
        for row in EffectiveTag.objects.filter(sitemap=sitemap, task=Task.COLOR)
    }


def test_a_scoped_head_answers_for_its_advertiser_only_and_a_shared_picture_keeps_each_answer(shared, register_tiny):
    ours, theirs, model = shared["ours"], shared["theirs"], shared["model"]
    theirs_before = stored_colors(theirs)
    scoped = scoped_version(register_tiny, parent=model, advertiser=ours.advertiser)
    assert promotion_tasks(version=scoped) == [Task.COLOR]  # its one task, not every head of the file

    shadow = shadow_run(pass_id=shadow_start(version=scoped, enqueue=False).pk)
    assert (shadow.status, shadow.total) == ("succeeded", 6)  # its advertiser's images only
    promotion = model_promote(version=scoped)

    assert (promotion.advertiser, promotion.from_version, promotion.to_version) == (ours.advertiser, model, scoped)
    assert ScopedHead.objects.get(advertiser=ours.advertiser, task=Task.COLOR).model_version == scoped
    assert ModelHead.objects.get(task=Task.COLOR, is_active=True).model_version == model  # the global model stays
    answers = dict(
        Classification.objects.filter(model_version=scoped, task=Task.COLOR).values_list("asset_id", "label")
    )
    ours_now = stored_colors(ours)
    assert ours_now == {asset: (answers[asset], scoped.pk) for asset in ours_now}
    assert stored_colors(theirs) == theirs_before  # the same pictures, the other advertiser: the global answer
    assert {version for _, version in theirs_before.values()} == {model.pk}
    assert any(ours_now[asset][0] != theirs_before[asset][0] for asset in ours_now)  # the answers differ
    assert store_mismatches() == []  # the SQL rule, the store and the rule in Python agree

    # The global stack is untouched: nothing was promoted for everyone, so there is nothing to roll back.
    with pytest.raises(PromotionError, match="no model was ever promoted for color"):
        rollback_plan(task=Task.COLOR)
    with pytest.raises(PromotionError, match="already answers color"):
        model_promote(version=scoped)

    rollback = scoped_rollback(advertiser=ours.advertiser, task=Task.COLOR)
    assert (rollback.kind, rollback.from_version, rollback.to_version) == ("rollback", scoped, model)
    assert stored_colors(ours) == {asset: theirs_before[asset] for asset in ours_now}
    assert store_mismatches() == []
    with pytest.raises(ScopedError, match="has no scoped head for color"):
        scoped_rollback(advertiser=ours.advertiser, task=Task.COLOR)


def test_where_the_scoped_head_has_no_answer_yet_the_active_model_answers_and_a_run_fills_it_in(shared, register_tiny):
    ours, model = shared["ours"], shared["model"]
    scoped = scoped_version(register_tiny, parent=model, advertiser=ours.advertiser)
    model_promote(version=scoped, force=True)  # forced: no shadow pass; the promotion classifies what it lacks
    assert Classification.objects.filter(model_version=scoped).count() == 6

    # A new picture of ours after the promotion: its Run classifies it with the scoped head before it finishes.
    Classification.objects.filter(model_version=scoped).first().delete()
    from reviews.effective_store import effective_tags_refresh

    effective_tags_refresh()
    versions = {version for _, version in stored_colors(ours).values()}
    assert versions == {model.pk, scoped.pk}  # the one without a scoped answer reads the active model's
    assert store_mismatches() == []
    run_sync(ours)
    assert Classification.objects.filter(model_version=scoped).count() == 6
    assert {version for _, version in stored_colors(ours).values()} == {scoped.pk}
    assert store_mismatches() == []


def test_the_api_and_the_image_page_say_which_model_answered(shared, register_tiny, client):
    ours, theirs, model = shared["ours"], shared["theirs"], shared["model"]
    scoped = scoped_version(register_tiny, parent=model, advertiser=ours.advertiser, name="tiny for ours")
    shadow_run(pass_id=shadow_start(version=scoped, enqueue=False).pk)
    model_promote(version=scoped)

    user = UserFactory()
    MembershipFactory(user=user, advertiser=ours.advertiser, role=Membership.Role.VIEWER)
    MembershipFactory(user=user, advertiser=theirs.advertiser, role=Membership.Role.VIEWER)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    for sitemap, version in ((ours, scoped), (theirs, model)):
        answer = api.get(f"/api/sitemaps/{sitemap.pk}/images/")
        assert answer.status_code == 200
        tags = [image["tags"]["color"] for image in answer.json()["results"]]
        assert tags
        assert {(tag["source"], tag["model_version"]) for tag in tags} == {("model", version.pk)}

    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    placement = Placement.objects.filter(listing__sitemap=ours).first()
    page = client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()
    assert "tiny for ours" in page
    assert f"scoped to {ours.advertiser}" in page
    assert "answers here" in page
    models = client.get(reverse("reviews:staff-models", args=[Task.COLOR])).content.decode()
    assert "tiny for ours" in models
    assert 'id="scoped-heads"' in models
    assert f'its labels only">for {ours.advertiser}</span>' in models  # its training job, in the jobs' list
    answer = client.post(reverse("reviews:staff-scoped-rollback", args=[Task.COLOR, ours.advertiser_id]))
    assert answer.status_code == 302
    assert not ScopedHead.objects.exists()
    assert Promotion.objects.filter(advertiser=ours.advertiser, kind="rollback").count() == 1


def test_rollback_model_retires_a_scoped_head_by_advertiser(shared, register_tiny, capsys):
    ours, model = shared["ours"], shared["model"]
    scoped = scoped_version(register_tiny, parent=model, advertiser=ours.advertiser)
    model_promote(version=scoped, force=True)

    call_command("rollback_model", "--task", "color", "--advertiser", ours.advertiser.slug)
    assert f"color of {ours.advertiser.slug}: tiny answers again (was tiny for one)" in capsys.readouterr().out
    with pytest.raises(CommandError, match="has no scoped head for color"):
        call_command("rollback_model", "--task", "color", "--advertiser", ours.advertiser.slug)
    with pytest.raises(CommandError, match="advertiser 'nobody' does not exist"):
        call_command("rollback_model", "--task", "color", "--advertiser", "nobody")
    with pytest.raises(PromotionError, match="no model was ever promoted"):
        model_rollback(task=Task.COLOR)


def test_a_scoped_manifest_holds_its_advertisers_rows_only():
    manifest = {
        "task": "color",
        "items": [{"asset": 1, "advertiser": "a"}, {"asset": 2, "advertiser": "b"}],
        "retain": [{"asset": 3, "advertiser": "a"}, {"asset": 4, "advertiser": "b"}],
        "guard": [{"asset": 5, "advertiser": "b"}],
    }
    scoped = scope_manifest(manifest, "a")
    assert scoped["items"] == [{"asset": 1, "advertiser": "a"}]
    assert scoped["retain"] == [{"asset": 3, "advertiser": "a"}]
    assert scoped["guard"] == []
    assert scoped["advertiser"] == "a"
    assert manifest["items"][1]["advertiser"] == "b"


def test_a_scoped_head_is_not_a_parent_and_a_head_refitted_from_another_model_is_refused(shared, register_tiny):
    ours, model = shared["ours"], shared["model"]
    other = register_tiny(name="tiny 2", activate=False, size=(16, 16))
    scoped = scoped_version(register_tiny, parent=other, advertiser=ours.advertiser)
    with pytest.raises(PromotionError, match="refitted from another model than the active one of color"):
        model_promote(version=scoped, force=True)
    assert not ScopedHead.objects.exists()
    assert not Promotion.objects.exists()
    model.refresh_from_db()
    assert model.status == "active"
    # Nor is a scoped head a parent: candidates are refitted from the global model.
    manifest = {"task": "color", "items": [{"asset": 1, "label": "red", "split": "train", "advertiser": "a"}]}
    with pytest.raises(TrainingError, match="is a scoped head: refit from the global model"):
        training_start(task="color", export_id=1, manifest=manifest, parent=scoped, enqueue=False)


def test_the_review_queue_asks_about_the_answer_that_stands(shared, register_tiny):
    ours, theirs, model = shared["ours"], shared["theirs"], shared["model"]
    scoped = scoped_version(register_tiny, parent=model, advertiser=ours.advertiser)
    model_promote(version=scoped, force=True)
    answers = {
        version: dict(
            Classification.objects.filter(model_version=version, task=Task.COLOR).values_list("asset_id", "label")
        )
        for version in (model.pk, scoped.pk)
    }
    for sitemap, version in ((ours, scoped.pk), (theirs, model.pk)):
        items = review_queue(user_advertiser_ids=[sitemap.advertiser_id], task=Task.COLOR, limit=100)
        assert items, "the tiny model's colors are unsure: every image is a question"
        assert {item.model_label for item in items} <= set(answers[version].values())
        assert all(item.model_label == answers[version][item.asset_id] for item in items)


def test_promoting_a_scoped_head_from_the_models_screen_asks_first_and_names_its_advertiser(
    shared, register_tiny, client
):
    ours, model = shared["ours"], shared["model"]
    scoped = scoped_version(register_tiny, parent=model, advertiser=ours.advertiser, name="tiny for ours")
    shadow_run(pass_id=shadow_start(version=scoped, enqueue=False).pk)
    client.force_login(UserFactory(is_staff=True))
    url = reverse("reviews:staff-model-promote", args=[scoped.pk])

    page = client.post(url, {"task": "color"}).content.decode()
    assert f"This changes what <strong>{ours.advertiser}</strong> sees, and no one else" in page
    assert not ScopedHead.objects.exists()  # nothing changes until confirmed
    signature = re.search(r'name="confirmed" value="([^"]*)"', page).group(1)
    answer = client.post(url, {"task": "color", "confirmed": signature}, follow=True)
    assert f"tiny for ours answers color for {ours.advertiser}" in answer.content.decode()
    assert ScopedHead.objects.get().model_version == scoped
    assert Promotion.objects.get(advertiser=ours.advertiser).user is not None


def test_the_scoped_join_reads_the_scoped_heads_results_by_index(among_many, register_tiny):
    """PostgreSQL: with a scoped head, the rule's second join reads that version's results through an index, not by
    hashing every result of the task (20,000 other results here)."""
    model = ModelHead.objects.get(task=Task.COLOR, is_active=True).model_version
    scoped = scoped_version(register_tiny, parent=model, advertiser=among_many.advertiser)
    ScopedHead.objects.create(advertiser=among_many.advertiser, task=Task.COLOR, model_version=scoped)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    heads = active_heads()
    assert heads.scoped == {Task.COLOR: {among_many.advertiser_id: scoped.pk}}
    placements = Placement.objects.filter(listing__sitemap=among_many)

    def plan(heads):
        sql, params = fresh_rows(placements, Task.COLOR, heads).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())

    scans = "Seq Scan on classifier_classification"
    with_scoped, without = plan(heads), plan(dict(heads))
    assert with_scoped != without
    # The scoped join adds an index scan on its version's rows, never another pass over every result.
    assert with_scoped.count(scans) == without.count(scans), with_scoped
    reads = " on classifier_classification "
    assert with_scoped.count(reads) == without.count(reads) + 1, with_scoped
    assert re.search(r"Index Scan using \S+ on classifier_classification", with_scoped), with_scoped
