"""Public views: reached from an email, with no login and no cookie."""

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from nurture.services.unsubscribe import (
    InvalidToken,
    read_token,
    unsubscribe_contact,
)


# RFC 8058: a mail client POSTs to the link with no cookie and no CSRF
# token, so this one view cannot require one. The signed token is what
# proves the request came from our email.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request, token: str):
    """Confirm on GET or HEAD; unsubscribe on POST (one-click or the button)."""
    try:
        link = read_token(token)
    except InvalidToken:
        return render(request, "nurture/unsubscribe/invalid.html", status=400)

    if request.method in ("GET", "HEAD"):
        # Link scanners follow every GET (some send HEAD); only a POST may
        # change anything.
        return render(request, "nurture/unsubscribe/confirm.html")

    unsubscribe_contact(link, now=timezone.now())
    return render(request, "nurture/unsubscribe/done.html")
