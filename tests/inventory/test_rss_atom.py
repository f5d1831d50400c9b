from datetime import UTC, datetime

from catalog.inventory import Kind, read_inventory

from .helpers import chunked

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
  <title>Dealer</title>
  <link>https://dealer.example/</link>
  <image><url>https://dealer.example/logo.png</url></image>
  <item>
    <title>2021 Ford F-150</title>
    <link> https://dealer.example/cars/1 </link>
    <pubDate>Wed, 01 May 2024 10:00:00 +0200</pubDate>
    <enclosure url="https://cdn.example/1/a.jpg" type="image/jpeg" length="1000"/>
    <enclosure url="https://cdn.example/1/tour.mp4" type="video/mp4" length="1000"/>
    <media:content url="https://cdn.example/1/b.jpg" medium="image"/>
    <media:content url="https://cdn.example/1/c.webp" type="image/webp"/>
    <media:content url="https://cdn.example/1/clip.mp4" medium="video"/>
    <media:group><media:thumbnail url="https://cdn.example/1/thumb.jpg"/></media:group>
    <media:content url="https://cdn.example/1/a.jpg" medium="image"/>
  </item>
  <item>
    <title>No link, permalink guid</title>
    <guid>https://dealer.example/cars/2</guid>
  </item>
  <item>
    <title>Nothing to link to</title>
    <guid isPermaLink="false">abc-3</guid>
  </item>
</channel>
</rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
  <title>Dealer</title>
  <link href="https://dealer.example/"/>
  <entry>
    <title>Car one</title>
    <link rel="self" href="https://dealer.example/api/cars/1"/>
    <link rel="alternate" type="text/html" href="https://dealer.example/cars/1"/>
    <link rel="enclosure" type="image/png" href="https://cdn.example/1/a.png"/>
    <link rel="enclosure" type="audio/mpeg" href="https://cdn.example/1/a.mp3"/>
    <media:thumbnail url="https://cdn.example/1/t.jpg"/>
    <updated>2024-05-01T10:00:00Z</updated>
  </entry>
  <entry>
    <title>Car two</title>
    <link href="/cars/2"/>
    <updated>not a date</updated>
  </entry>
</feed>"""


def test_rss_items_with_image_enclosures_and_media():
    inventory = read_inventory(chunked(RSS, 50))

    assert inventory.kind is Kind.RSS
    assert [page.loc for page in inventory.pages] == [
        "https://dealer.example/cars/1",
        "https://dealer.example/cars/2",
    ]
    first = inventory.pages[0]
    assert first.images == [
        "https://cdn.example/1/a.jpg",
        "https://cdn.example/1/b.jpg",
        "https://cdn.example/1/c.webp",
        "https://cdn.example/1/thumb.jpg",
    ]
    assert first.title == "2021 Ford F-150"
    assert first.lastmod == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert inventory.pages[1].images == []
    assert len(inventory.errors) == 1
    assert inventory.errors[0].startswith("item 3: loc")


def test_atom_entries():
    inventory = read_inventory([ATOM], url="https://dealer.example/feed.atom")

    assert inventory.kind is Kind.ATOM
    assert [(page.loc, page.images) for page in inventory.pages] == [
        ("https://dealer.example/cars/1", ["https://cdn.example/1/a.png", "https://cdn.example/1/t.jpg"]),
        ("https://dealer.example/cars/2", []),
    ]
    assert inventory.pages[0].lastmod == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert inventory.pages[0].title == "Car one"
    assert inventory.pages[1].lastmod is None
    assert inventory.errors == []
