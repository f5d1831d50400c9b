from django.conf import settings

from catalog.inventory import FEED_FORMAT_DOC


def test_the_readme_documents_the_feed_format_as_the_code_validates_it():
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert FEED_FORMAT_DOC.strip() in readme
