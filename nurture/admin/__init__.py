"""The operator UI for cadences, rep work, scoring, routing and handoffs.

Actions only call services from nurture.services; a refusal becomes a
message naming the record and the reason, and the other records go on.
"""

from . import cadences, contacts, content, lifecycle, routing, scoring, work  # noqa: F401
