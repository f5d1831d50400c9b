import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from catalog.services import advertiser_get_or_create, sitemap_get_or_create


class Command(BaseCommand):
    help = "Creates the demo advertiser, its sitemap and a staff login (printed). Safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="staff")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the dev server listens.")

    def handle(self, *args: object, username: str, base_url: str, **options: object) -> None:
        advertiser = advertiser_get_or_create(slug="demo-motors", name="Demo Motors")
        sitemap = sitemap_get_or_create(
            advertiser=advertiser,
            url=f"{base_url.rstrip('/')}/static/demo/sitemap.xml",
            name="Demo Motors inventory",
        )
        password = secrets.token_urlsafe(12)
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(
            self.style.SUCCESS(f"Demo advertiser '{advertiser.name}', sitemap #{sitemap.pk}: {sitemap.url}")
        )
        self.stdout.write(self.style.SUCCESS(f"Staff login: {username} / {password}  at {base_url}/admin/"))
