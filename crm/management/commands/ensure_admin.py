from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create or update a superuser; running it again changes nothing."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="")

    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=options["username"],
            defaults={"is_staff": True, "is_superuser": True},
        )

        changed = []
        if not (user.is_staff and user.is_superuser and user.is_active):
            user.is_staff = user.is_superuser = user.is_active = True
            changed += ["is_staff", "is_superuser", "is_active"]
        if options["email"] and user.email != options["email"]:
            user.email = options["email"]
            changed.append("email")
        # Only re-hash when the password differs, so a repeat run is a no-op.
        if not user.check_password(options["password"]):
            user.set_password(options["password"])
            changed.append("password")
        if changed:
            user.save(update_fields=changed)

        state = "created" if created else ("updated" if changed else "unchanged")
        self.stdout.write(f"superuser {user.get_username()}: {state}")
