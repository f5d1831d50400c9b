import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandParser

from catalog.services import advertiser_get_or_create, sitemap_get_or_create
from config.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Creates the demo advertiser, its sitemap and a staff login (printed). Safe to run again: the staff "
        "password is made once and kept in var/staff_password (reset it with manage.py changepassword staff)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="staff")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the dev server listens.")
        parser.add_argument(
            "--inventory-url",
            default="http://127.0.0.1:8001/sitemap.xml",
            help="The demo inventory's sitemap (bin/start serves one with python -m catalog.inventory_server).",
        )

    def handle(self, *args: object, username: str, base_url: str, inventory_url: str, **options: object) -> None:
        advertiser = advertiser_get_or_create(slug="demo-motors", name="Demo Motors")
        sitemap = sitemap_get_or_create(advertiser=advertiser, url=inventory_url, name="Demo Motors inventory")
        password = self._staff_login(username)
        write = self.stdout.write
        write(self.style.SUCCESS(f"Demo advertiser '{advertiser.name}', sitemap #{sitemap.pk}: {sitemap.url}"))
        if password is None:
            write(
                self.style.SUCCESS(f"Staff login: {username} (password changed since it was made)  at {base_url}/")
                + f"\n  forgotten? .venv/bin/python manage.py changepassword {username}"
            )
        else:
            write(self.style.SUCCESS(f"Staff login: {username} / {password}  at {base_url}/"))
        write(f"Bring its images in: .venv/bin/python manage.py run_sitemap {sitemap.pk} --sync")

    def _staff_login(self, username: str) -> str | None:
        """The staff user's password as made by this command, once: kept under var/ so that a restart prints the
        same login. None when someone changed it since (manage.py changepassword): it is left alone."""
        stored = Path(settings.VAR_DIR) / f"{username}_password"
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        if not user.is_staff or not user.is_superuser:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        password = stored.read_text(encoding="utf-8").strip() if stored.is_file() else ""
        if password and not created and user.has_usable_password():
            return password if user.check_password(password) else None
        password = password or secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.touch(mode=0o600)
        stored.write_text(password + "\n", encoding="utf-8")
        return password
