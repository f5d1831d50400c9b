"""One way to take keys: static/js/keys.js listens for them, and each screen that has keys binds its map through it
(its moves, the guard for fields and modifier keys). The browser tests of each screen press the keys."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCREENS = {"grid": "sitemap_grid", "queue": "queue", "cluster": "cluster_review", "loop": "export"}


def test_only_the_key_module_listens_for_keys():
    listeners = {
        path.name for path in (ROOT / "static/js").glob("*.js") if re.search(r"""["']keydown["']""", path.read_text())
    }
    assert listeners == {"keys.js"}


def test_every_screen_with_keys_loads_the_module_first_and_binds_through_it():
    for script, template in SCREENS.items():
        source = (ROOT / f"static/js/{script}.js").read_text()
        assert source.count("Keys.bind(") == 1, script
        html = (ROOT / f"reviews/templates/reviews/{template}.html").read_text()
        assert html.index("{% static 'js/keys.js' %}") < html.index(f"{{% static 'js/{script}.js' %}}"), template
