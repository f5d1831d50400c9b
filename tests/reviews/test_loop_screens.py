"""The loop's staff screens through Django's test client: exports (form, live preview, list, one page per
export, keep/drop, freeze), models (comparison, shadow pass, promotion, rollback) and accuracy over time.
Staff only: an advertiser user gets 403 everywhere (reviews.guards), an anonymous visitor the login page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from classifier.models import ModelHead, ModelVersion, Promotion, ShadowPass, TrainingJob
from classifier.services.inference import forget_sessions
from classifier.services.registry import model_register
from reviews.models import DatasetExport, ExportItem, ManualFix
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.factories import AdvertiserFactory, MembershipFactory, SitemapFactory, UserFactory
from tests.reviews.export_helpers import label, show, stored_asset

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="reviewer", is_staff=True))
    return client


@pytest.fixture
def advertiser_client(client):
    user = UserFactory(username="dealer")
    MembershipFactory(user=user)
    client.force_login(user)
    return client


def labelled(sitemap, n, *, start=0, size=(96, 72), new_label="Dealer", status="ok"):
    placements = [show(sitemap, stored_asset(start + i, size=size), status=status) for i in range(n)]
    for placement in placements:
        label(placement, new_label)
    return placements


def make_export(*, n=4, pending=2, status=DatasetExport.Status.REVIEW) -> DatasetExport:
    """An export in review with `n` items, the first `pending` flagged as likely label mistakes."""
    sitemap = SitemapFactory()
    placements = labelled(sitemap, n, start=500 + DatasetExport.objects.count() * 50)
    export = DatasetExport.objects.create(
        task="image_type",
        status=status,
        params={"task": "image_type", "min_side": 64, "advertisers": [], "sources": []},
        counts={"train": {"Dealer": n - 1}, "test": {"Dealer": 1}},
        excluded={"too_small": 2},
        label_issues=pending,
        progress=1.0,
    )
    for i, placement in enumerate(placements):
        ExportItem.objects.create(
            export=export,
            advertiser_id=placement.listing.sitemap.advertiser_id,
            asset_id=placement.asset_id,
            listing_id=placement.listing_id,
            label="Dealer",
            source="staff",
            split="test" if i == n - 1 else "train",
            group=f"g{i}",
            crop_box=[4, 4, 60, 50],
            model_label="Stock",
            self_confidence=0.05 + i / 100,
            decision=ExportItem.Decision.PENDING if i < pending else ExportItem.Decision.NONE,
        )
    return export


def candidates_job(task="color"):
    """An active model, two registered candidates and a succeeded training job comparing them on a test split
    of two advertisers, where the second candidate makes "south" worse."""
    active = model_register(
        data=mean_classifier(size=(8, 8)), contract=classifier_contract(name="active"), activate=True
    )
    versions = [
        model_register(data=mean_classifier(size=size), contract=classifier_contract(name=name, size=size))
        for name, size in (("cand-1", (9, 9)), ("cand-2", (10, 10)))
    ]
    labels = ["red", "green", "blue"]

    def test(accuracy):
        return {
            "accuracy": accuracy, "macro_f1": accuracy - 0.05, "labels": labels, "n": 20,
            "per_class": {lab: {"precision": accuracy, "recall": 0.8, "f1": 0.7, "support": 7} for lab in labels},
            "confusion": [[5, 1, 1], [0, 6, 1], [2, 0, 4]],
        }  # fmt: skip

    job = TrainingJob.objects.create(
        task=task, parent=active, export_id=1, status=TrainingJob.Status.SUCCEEDED,
        progress=1.0, stage="done",
        result={
            "export": 1,
            "baseline": {"model_version": active.pk, "test": test(0.7), "local_accuracy": {"north": 0.5, "south": 0.9}},
            "candidates": [
                {"model_version": versions[0].pk, "params": {"anchor": 0.1}, "test": test(0.85),
                 "local_accuracy": {"north": 0.9, "south": 0.9}},
                {"model_version": versions[1].pk, "params": {"anchor": 0.01}, "test": test(0.8),
                 "local_accuracy": {"north": 0.95, "south": 0.7}},
            ],
            "best": versions[0].pk,
        },
    )  # fmt: skip
    for version in versions:
        version.status, version.training_job, version.parent = ModelVersion.Status.CANDIDATE, job, active
        version.save()
    return active, versions, job


def urls(export_id=1, version_id=1):
    return [
        ("get", reverse("reviews:staff-exports")),
        ("get", reverse("reviews:staff-export-preview")),
        ("get", reverse("reviews:staff-export", args=[export_id])),
        ("get", reverse("reviews:staff-export-status", args=[export_id])),
        ("post", reverse("reviews:staff-export-decide", args=[export_id])),
        ("post", reverse("reviews:staff-export-freeze", args=[export_id])),
        ("post", reverse("reviews:staff-export-train", args=[export_id])),
        ("get", reverse("reviews:staff-job", args=["training", 1])),
        ("get", reverse("reviews:staff-models-root")),
        ("get", reverse("reviews:staff-models", args=["image_type"])),
        ("get", reverse("reviews:staff-accuracy", args=["image_type"])),
        ("post", reverse("reviews:staff-model-rollback", args=["image_type"])),
        ("post", reverse("reviews:staff-model-shadow", args=[version_id])),
        ("post", reverse("reviews:staff-model-promote", args=[version_id])),
    ]


def test_every_loop_page_renders_for_staff(staff_client):
    export = make_export()
    _, versions, job = candidates_job()
    assert staff_client.get(reverse("reviews:staff-exports")).status_code == 200
    page = staff_client.get(reverse("reviews:staff-export", args=[export.pk]))
    assert page.status_code == 200
    assert b'id="issues"' in page.content
    assert b"Freeze keeping the rest" in page.content
    assert staff_client.get(reverse("reviews:staff-models-root")).url == reverse(
        "reviews:staff-models", args=["image_type"]
    )
    models = staff_client.get(reverse("reviews:staff-models", args=["color"]))
    assert models.status_code == 200
    text = models.content.decode()
    assert "cand-1" in text
    assert "★ best" in text
    assert 'class="heatmap"' in text
    # cand-2 makes south worse than the baseline (0.7 < 0.9): its cell is marked.
    local = text[text.index('id="local-accuracy"') :]
    south = local[local.index('data-advertiser="south"') :].split("</tr>")[0]
    assert south.count("worse") == 1
    assert "70.0%" in south
    assert staff_client.get(reverse("reviews:staff-accuracy", args=["color"])).status_code == 200
    assert staff_client.get(reverse("reviews:staff-job", args=["training", job.pk])).status_code == 200
    assert len(versions) == 2


def test_everything_is_403_for_an_advertiser_user_and_login_for_anonymous(client, advertiser_client):
    export = make_export()
    _, versions, _ = candidates_job()
    for method, url in urls(export.pk, versions[0].pk):
        assert getattr(advertiser_client, method)(url).status_code == 403, url
    advertiser_client.logout()
    for method, url in urls(export.pk, versions[0].pk):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert "/accounts/login/" in response.url, url
    assert not Promotion.objects.exists()
    assert DatasetExport.objects.get(pk=export.pk).status == DatasetExport.Status.REVIEW


def test_the_preview_counts_what_would_go_in_and_what_stays_out_without_creating_anything(staff_client):
    north, south = AdvertiserFactory(slug="north"), AdvertiserFactory(slug="south")
    sitemap = SitemapFactory(advertiser=north)
    labelled(sitemap, 3)
    labelled(sitemap, 2, start=10, size=(48, 40))  # too small
    labelled(sitemap, 1, start=20, status="failed")
    conflict = labelled(sitemap, 1, start=30)[0]
    label(conflict, "Stock", source="advertiser")  # the advertiser disagrees with staff: not settled
    labelled(SitemapFactory(advertiser=south), 4, start=40)

    url = reverse("reviews:staff-export-preview")
    every = staff_client.get(url, {"task": "image_type", "since_last_training": "on", "min_side": "64"})
    assert every.status_code == 200
    text = every.content.decode()
    assert 'data-eligible="7"' in text  # 3 + 4
    assert 'data-reason="too_small"><strong>2</strong>' in text
    assert 'data-reason="failed_image"><strong>1</strong>' in text
    assert 'data-reason="conflict_advertiser_staff"><strong>1</strong>' in text

    only_north = staff_client.get(url, {"task": "image_type", "advertisers": "north", "min_side": "40"})
    assert 'data-eligible="5"' in only_north.content.decode()  # small images are big enough now
    assert not DatasetExport.objects.exists()


def test_create_redirects_to_the_export_page_and_an_empty_export_is_an_error_in_the_form(staff_client):
    labelled(SitemapFactory(advertiser=AdvertiserFactory(slug="north")), 2)
    url = reverse("reviews:staff-exports")
    refused = staff_client.post(url, {"task": "color", "since_last_training": "on", "min_side": "64"})
    assert refused.status_code == 400
    assert "no labelled images match these filters" in refused.content.decode()
    assert not DatasetExport.objects.exists()

    created = staff_client.post(url, {"task": "image_type", "since_last_training": "on", "min_side": "64"})
    export = DatasetExport.objects.get()
    assert created.status_code == 302
    assert created.url == reverse("reviews:staff-export", args=[export.pk])
    page = staff_client.get(created.url)
    assert 'hx-trigger="every 1s"' in page.content.decode()  # building: the status polls


def test_one_key_keeps_or_drops_a_likely_mistake(staff_client):
    export = make_export(n=4, pending=2)
    first, second = export.items.filter(decision="pending").order_by("id")
    url = reverse("reviews:staff-export-decide", args=[export.pk])

    kept = staff_client.post(url, {"item": first.pk, "decision": "keep"})
    assert kept.status_code == 200
    assert kept.json()["decision"] == "keep"
    assert kept.json()["pending"] == 1
    dropped = staff_client.post(url, {"item": second.pk, "decision": "drop"}).json()
    assert dropped["pending"] == 0
    assert dropped["counts"] == {"train": {"Dealer": 2}, "test": {"Dealer": 1}}  # the dropped one is out
    refused = staff_client.post(url, {"item": export.items.filter(decision="").first().pk, "decision": "drop"})
    assert refused.status_code == 400
    assert "not a likely label mistake" in refused.json()["error"]


def test_freeze_is_refused_with_a_message_while_mistakes_are_pending(staff_client):
    export = make_export(n=4, pending=2)
    response = staff_client.post(reverse("reviews:staff-export-freeze", args=[export.pk]), follow=True)
    text = response.content.decode()
    assert "2 likely label mistakes of export" in text
    assert "still to look at" in text
    export.refresh_from_db()
    assert export.status == DatasetExport.Status.REVIEW
    assert export.stage != "freezing: queued"

    accepted = staff_client.post(reverse("reviews:staff-export-freeze", args=[export.pk]), {"keep_pending": "1"})
    assert accepted.status_code == 302
    export.refresh_from_db()
    assert export.stage == "freezing: queued"  # handed to the freeze task (runs after commit)


def test_promotion_is_refused_until_the_shadow_pass_then_forced_and_rolled_back(staff_client):
    active, versions, job = candidates_job()
    sitemap = SitemapFactory()
    show(sitemap, stored_asset(1))  # a live image: the candidate has no result of it yet
    promote = reverse("reviews:staff-model-promote", args=[versions[0].pk])
    models = reverse("reviews:staff-models", args=["color"])

    page = staff_client.get(models).content.decode()
    assert "No finished shadow pass" in page
    assert "Promote anyway" in page
    plain = staff_client.post(promote, {"task": "color", "job": job.pk})  # a plain Promote posted meanwhile
    assert "Promote cand-1 anyway" in plain.content.decode()  # its confirmation says why it would not be instant
    unforced = {"task": "color", "job": job.pk, "confirmed": plain.context["signature"]}
    refused = staff_client.post(promote, unforced, follow=True)
    assert "Not promoted" in refused.content.decode()
    assert "has had no shadow pass" in refused.content.decode()
    assert not Promotion.objects.exists()

    asked = staff_client.post(promote, {"task": "color", "job": job.pk, "force": "1"})
    assert "Promote cand-1?" in asked.content.decode()
    assert "has had no shadow pass" in asked.content.decode()
    assert not Promotion.objects.exists()  # nothing before the confirmation
    forced = staff_client.post(
        promote, {"task": "color", "job": job.pk, "force": "1", "confirmed": asked.context["signature"]}, follow=True
    )
    text = forced.content.decode()
    assert "cand-1 is now the active model for color, sensitive (forced" in text
    assert 'id="last-promotion"' in text
    assert "by reviewer" in text
    promotion = Promotion.objects.get(task="color")  # and one for its sensitive head
    assert promotion.forced
    assert promotion.user.username == "reviewer"
    assert promotion.from_version == active

    rollback = reverse("reviews:staff-model-rollback", args=["color"])
    asked = staff_client.post(rollback)
    assert "Roll back to active?" in asked.content.decode()
    assert ModelHead.objects.get(task="color", is_active=True).model_version == versions[0]
    rolled = staff_client.post(rollback, {"confirmed": asked.context["signature"]}, follow=True)
    assert "Rolled back: active is the active model again for color, sensitive" in rolled.content.decode()
    assert ModelHead.objects.get(task="color", is_active=True).model_version == active


def test_the_models_page_shows_each_candidates_flips_of_confident_tags_outside_the_export(staff_client):
    _, _, job = candidates_job()
    job.result |= {"trained_for": ["north", "south"]}
    job.result["baseline"]["confident_flips"] = {"west": {"confident": 300, "flipped": 0}}
    job.result["candidates"][0]["confident_flips"] = {"west": {"confident": 300, "flipped": 3}}
    job.result["candidates"][1]["confident_flips"] = {
        "west": {"confident": 300, "flipped": 21},
        "north": {"confident": 100, "flipped": 60},
    }
    job.save()

    page = staff_client.get(reverse("reviews:staff-models", args=["color"]))

    rows = {slug: (in_export, cells) for slug, in_export, cells in page.context["guard_table"]}
    assert [(c.flipped, c.over) if c else None for c in rows["west"][1]] == [(0, False), (3, False), (21, True)]
    assert rows["north"][0] is True  # in the export: its measured accuracy judges it, never a regression here
    assert [(c.flipped, c.over) if c else None for c in rows["north"][1]] == [None, None, (60, False)]
    html = page.content.decode()
    assert '<td class="num worse">7.0% <span class="muted small">21 of 300</span></td>' in html


def test_a_running_shadow_pass_polls_and_the_promote_button_says_so(staff_client):
    _, versions, _ = candidates_job()
    shadow = ShadowPass.objects.create(
        model_version=versions[1], status=ShadowPass.Status.RUNNING, total=10, done=3, progress=0.3,
        started_at=timezone.now(),
    )  # fmt: skip
    page = staff_client.get(reverse("reviews:staff-models", args=["color"])).content.decode()
    assert f'id="job-shadow-{shadow.pk}"' in page
    assert "The shadow pass has not finished" in page
    poll = staff_client.get(reverse("reviews:staff-job", args=["shadow", shadow.pk]), HTTP_HX_REQUEST="true")
    assert "3 of 10 images" in poll.content.decode()
    assert "HX-Refresh" not in poll
    ShadowPass.objects.filter(pk=shadow.pk).update(status=ShadowPass.Status.SUCCEEDED, done=10, progress=1.0)
    done = staff_client.get(reverse("reviews:staff-job", args=["shadow", shadow.pk]), HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"  # the page reloads once to show the flips


def test_the_exports_list_and_the_models_page_cost_constant_queries(staff_client, django_assert_max_num_queries):
    make_export()
    candidates_job()
    with django_assert_max_num_queries(40) as few_exports:
        staff_client.get(reverse("reviews:staff-exports"))
    with django_assert_max_num_queries(40) as few_models:
        staff_client.get(reverse("reviews:staff-models", args=["color"]))
    for _ in range(4):
        make_export()
    with django_assert_max_num_queries(len(few_exports.captured_queries)):
        staff_client.get(reverse("reviews:staff-exports"))
    candidates_job_more = [
        TrainingJob.objects.create(task="color", parent=ModelVersion.objects.first(), export_id=90 + i)
        for i in range(3)
    ]
    with django_assert_max_num_queries(len(few_models.captured_queries)):
        staff_client.get(reverse("reviews:staff-models", args=["color"]))
    assert len(candidates_job_more) == 3


def test_accuracy_over_time_draws_a_line_per_advertiser_with_the_promotions_marked(staff_client, monkeypatch):
    active, versions, _ = candidates_job()
    north, south = AdvertiserFactory(slug="north", name="North"), AdvertiserFactory(slug="south", name="South")
    now = timezone.now()
    for weeks_ago, advertiser, overturned in ((3, north, True), (3, south, False), (1, north, True), (0, south, True)):
        asset = stored_asset(900 + weeks_ago * 10 + advertiser.pk)
        monkeypatch.setattr(timezone, "now", lambda weeks_ago=weeks_ago: now - timedelta(weeks=weeks_ago))
        ManualFix.objects.create(
            advertiser=advertiser, asset=asset, task="color", old_label="red",
            new_label="green" if overturned else "red", source="staff",
        )  # fmt: skip
    monkeypatch.undo()
    Promotion.objects.create(task="color", from_version=active, to_version=versions[0])

    page = staff_client.get(reverse("reviews:staff-accuracy", args=["color"]), {"weeks": 8})
    text = page.content.decode()
    assert page.status_code == 200
    assert text.count("<polyline") == 3  # overall, north and south, each joining its reviewed weeks
    assert 'data-series="overall"' in text
    assert '<g class="marker promote">' in text
    assert "▲ cand-1" in text
    rows = text[text.index('id="accuracy-table"') :]
    assert "50.0% <span" in rows  # week -3: one of two overturned
    assert "North" in text
    assert "South" in text
