"""Create the demo accounts: one admin, one clinician, one annotator (idempotent)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from webapp.accounts.roles import ADMIN, ANNOTATOR, CLINICIAN, assign_role

#: (username, password, role). Demo only: the README says to change them before any real use.
DEMO_USERS = (("admin", "admin-demo-pass", ADMIN), ("clinician", "clinician-demo-pass", CLINICIAN),
              ("annotator", "annotator-demo-pass", ANNOTATOR))


class Command(BaseCommand):
    help = "Create the demo admin, clinician and annotator accounts."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        for username, password, role in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
                user.is_staff = user.is_superuser = role == ADMIN
                user.save()
            assign_role(user, role)
            self.stdout.write(f"{'created' if created else 'kept'} {role:10s} {username} / {password}")
