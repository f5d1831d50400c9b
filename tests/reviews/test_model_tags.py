"""classify_file and analyze_url print the tags in effect by the one rule: a Placeholder has no color."""

import io
import json

import pytest
from django.core.management import call_command
from PIL import Image

from catalog.inventory_server import InventoryServer
from classifier.services.inference import forget_sessions
from classifier.services.registry import model_register
from tests.classifier.onnx_builders import classifier_contract, mean_classifier, region_classifier, region_contract

pytestmark = pytest.mark.django_db


def jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


WHITE, DARK_RED = jpeg((255, 255, 255)), jpeg((120, 10, 10))  # the region model: Placeholder, Stock


@pytest.fixture
def models():
    # image_type from a bright top-left corner (white: Placeholder); color from the channel means. The process keeps
    # sessions by version id, which the next test's models reuse: dropped before and after.
    forget_sessions()
    model_register(data=region_classifier(), contract=region_contract(), activate=True)
    model_register(data=mean_classifier(), contract=classifier_contract(), activate=True)
    yield
    forget_sessions()


def test_classify_file_gives_a_placeholder_no_color(models, tmp_path, capsys):
    # It printed the color model's answer for a Placeholder, which no screen, API or export shows.
    white, red = tmp_path / "white.jpg", tmp_path / "red.jpg"
    white.write_bytes(WHITE)
    red.write_bytes(DARK_RED)

    call_command("classify_file", str(white), str(red), "--json")

    placeholder, stock = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (placeholder["tags"]["image_type"]["label"], placeholder["tags"]["color"]) == (
        "Placeholder",
        {"label": None, "source": "rule"},
    )
    assert stock["tags"]["image_type"]["label"] == "Stock"
    assert (stock["tags"]["color"]["label"], stock["tags"]["color"]["source"]) == ("red", "model")
    assert stock["tags"]["color"]["confidence"] > 0

    call_command("classify_file", str(white))
    out = capsys.readouterr().out
    assert "Placeholder" in out
    assert not {"red", "green", "blue"} & set(out.split())


def test_analyze_url_gives_a_placeholder_no_color(models, capsys):
    with InventoryServer(images=[WHITE, DARK_RED], images_per_listing=2) as server:
        call_command("analyze_url", server.listing_url(0), "--json", "--ambiguous-margin", "0")
        report = json.loads(capsys.readouterr().out)
        call_command("analyze_url", server.listing_url(0))
        table = capsys.readouterr().out

    placeholder, stock = report["images"]
    assert placeholder["tags"]["image_type"]["label"] == "Placeholder"
    assert placeholder["tags"]["color"] == {"label": None, "source": "rule"}
    assert stock["tags"]["color"]["label"] == "red"
    placeholder_row = next(line for line in table.splitlines() if "Placeholder" in line)
    assert " none " in placeholder_row
    assert not {"red", "green", "blue"} & set(placeholder_row.split())
