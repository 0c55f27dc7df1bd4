"""Who may do what through the API: the same model permissions as the admin."""

from rest_framework.permissions import DjangoModelPermissions

# Detail actions that change a record rather than add one.
CHANGE_ACTIONS = frozenset({"pause", "resume", "accept", "reject"})


class ModelPermissions(DjangoModelPermissions):
    """Require the admin's view, add and change permissions for API calls.

    Reading needs ``view``; creating needs ``add``; updating, and actions
    such as pause or accept, need ``change``. Which records a user reaches is
    narrowed further by each view's queryset (a rep's own contacts).
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view):
        if getattr(view, "action_map", None) is not None and view.action is None:
            # A method this viewset does not route: let it answer 405.
            return bool(request.user and request.user.is_authenticated)
        if getattr(view, "action", None) in CHANGE_ACTIONS:
            request = _AsMethod(request, "PATCH")
        return super().has_permission(request, view)


class _AsMethod:
    """A request seen with another HTTP method, for the permission lookup."""

    def __init__(self, request, method: str):
        self._request = request
        self.method = method

    def __getattr__(self, name):
        return getattr(self._request, name)
