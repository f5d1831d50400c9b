import json

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Run

pytestmark = pytest.mark.django_db


def test_an_invalid_feed_prints_every_problem_as_the_api_does(tmp_path):
    feed = tmp_path / "scrape.json"
    feed.write_text(
        json.dumps(
            {"format": "imagetagger-feed/1", "listings": [{"external_id": "", "url": "ftp://x", "images": ["nope"]}]}
        )
    )

    with pytest.raises(CommandError) as refused:
        call_command("run_sitemap", "--advertiser", "acme", "--kind", "feed", "--feed", str(feed), "--sync")

    message = str(refused.value)
    assert "more)" not in message
    assert "3 problem(s)" in message
    for path in ("listings[0].external_id", "listings[0].url", "listings[0].images[0]"):
        assert f"\n  {path}" in message
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"format": "imagetagger-feed/1", "listings": [], "x": NaN}', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_feed_file_the_api_refuses_is_refused_in_one_line(tmp_path, text, problem):
    feed = tmp_path / "scrape.json"
    feed.write_text(text)

    with pytest.raises(CommandError) as refused:
        call_command("run_sitemap", "--advertiser", "acme", "--kind", "feed", "--feed", str(feed), "--sync")

    assert problem in str(refused.value)
    assert not Run.objects.exists()
