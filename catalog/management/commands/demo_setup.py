import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from catalog.services import advertiser_get_or_create, sitemap_get_or_create


class Command(BaseCommand):
    help = "Creates the demo advertiser, its sitemap and a staff login (printed). Safe to run again."

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
        password = secrets.token_urlsafe(12)
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        write = self.stdout.write
        write(self.style.SUCCESS(f"Demo advertiser '{advertiser.name}', sitemap #{sitemap.pk}: {sitemap.url}"))
        write(self.style.SUCCESS(f"Staff login: {username} / {password}  at {base_url}/admin/"))
        write(f"Bring its images in: .venv/bin/python manage.py run_sitemap {sitemap.pk} --sync")
