"""``python manage.py dicom_peer add|remove|list``: the command-line twin of the admin UI and API for peers."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from webapp.dicomnode.models import DicomPeer


class Command(BaseCommand):
    help = "Manage DICOM peers: the calling-AE allow-list of the listener and the C-STORE result destinations."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add or update a peer")
        add.add_argument("--ae-title", required=True)
        add.add_argument("--host", default="")
        add.add_argument("--port", type=int)
        add.add_argument("--description", default="")
        add.add_argument("--destination", action="store_true", help="send results to this peer (C-STORE)")
        add.add_argument("--no-send", action="store_true", help="do not put it on the listener's allow-list")
        remove = sub.add_parser("remove", help="remove a peer")
        remove.add_argument("--ae-title", required=True)
        sub.add_parser("list", help="list the peers")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"do_{action}")(**options)

    def do_add(self, *, ae_title: str, host: str, port: int | None, description: str, destination: bool,
               no_send: bool, **_) -> None:
        peer = DicomPeer.objects.filter(ae_title=ae_title).first() or DicomPeer(ae_title=ae_title)
        peer.host, peer.port, peer.description = host, port, description
        peer.is_destination, peer.may_send = destination, not no_send
        try:
            peer.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        peer.save()
        self.stdout.write(f"saved {describe(peer)}")

    def do_remove(self, *, ae_title: str, **_) -> None:
        deleted, _ = DicomPeer.objects.filter(ae_title=ae_title).delete()
        if not deleted:
            raise CommandError(f"no peer {ae_title}")
        self.stdout.write(f"removed {ae_title}")

    def do_list(self, **_) -> None:
        for peer in DicomPeer.objects.all():
            self.stdout.write(describe(peer))


def describe(peer: DicomPeer) -> str:
    roles = [r for r, on in (("may send", peer.may_send), ("destination", peer.is_destination)) if on]
    return f"{peer} [{', '.join(roles) or 'inactive'}]"
