"""classify_file and analyze_url against real local files and a real local HTTP server."""

import json

import pytest
from django.core.management import CommandError, call_command

from catalog.inventory_server import InventoryServer, make_inventory_images

pytestmark = pytest.mark.django_db


def test_analyze_url_reports_every_image_of_a_product_page(register_tiny, capsys):
    register_tiny()
    with InventoryServer(images=make_inventory_images(4, seed=9), images_per_listing=3) as server:
        call_command("analyze_url", server.listing_url(0), "--json")
        expected = [server.image_url(i) for i in server.listing_images(0)]

    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "page"
    assert [image["url"] for image in report["images"]] == expected
    first = report["images"][0]
    assert set(first["tags"]) == {"color", "sensitive"}
    assert first["tags"]["color"]["label"] in {"red", "green", "blue"}
    assert "failed" not in first["flags"]


def test_analyze_url_flags_images_that_cannot_be_tagged_and_prints_a_table(register_tiny, capsys):
    register_tiny()
    with InventoryServer(images=make_inventory_images(2, seed=9), images_per_listing=2) as server:
        server.add_route("/mixed", _page(server))
        call_command("analyze_url", f"{server.base_url}/mixed", "--ambiguous-margin", "1.1")

    out = capsys.readouterr().out
    assert "3 images" in out
    assert "failed" in out  # the HTML pretending to be a JPEG
    assert "ambiguous: 2" in out  # every tag's margin is below 1.1


def _page(server):
    def handle(request):
        body = (
            f'<html><body><img src="/img/0/0.jpg"><img src="/img/0/1.jpg"><img src="/special/html.jpg">'
            f'<img src="{server.base_url}/img/0/0.jpg"></body></html>'
        ).encode()
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def test_without_an_active_model_the_commands_say_so(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(make_inventory_images(1, seed=1)[0])
    with pytest.raises(CommandError, match="no active model"):
        call_command("classify_file", str(image))
