"""Pick the next best content item for each contact of a batch.

The item fits the contact's buyer stage (from the lifecycle stage) and, when
it names personas or industries, the contact's occupation, title or
account industry. Items the contact downloaded, or that an earlier email
already offered, are passed over.
"""

import re
from collections import defaultdict
from collections.abc import Iterable

from crm.models import Contact, EngagementEvent, LifecycleStage
from nurture.models import Channel, ContentItem, Touch

BuyerStage = ContentItem.BuyerStage

BUYER_STAGES = {
    LifecycleStage.SUBSCRIBER: BuyerStage.AWARENESS,
    LifecycleStage.LEAD: BuyerStage.AWARENESS,
    LifecycleStage.DISQUALIFIED: BuyerStage.AWARENESS,
    LifecycleStage.MQL: BuyerStage.CONSIDERATION,
    LifecycleStage.RECYCLED: BuyerStage.CONSIDERATION,
    LifecycleStage.SQL: BuyerStage.DECISION,
    LifecycleStage.OPPORTUNITY: BuyerStage.DECISION,
    LifecycleStage.CUSTOMER: BuyerStage.DECISION,
}

# An email touch that offered an item says so in its detail.
OFFERED_PREFIX = "content:"
_OFFERED = re.compile(r"^content:(\d+)$")


def buyer_stage(contact: Contact) -> str:
    """Return the buyer stage a contact's lifecycle stage stands for."""
    return BUYER_STAGES.get(contact.lifecycle_stage, BuyerStage.AWARENESS)


def offered_detail(item: ContentItem) -> str:
    """Return the touch detail that records an email offered ``item``."""
    return f"{OFFERED_PREFIX}{item.pk}"


def next_content_for(
    contacts: Iterable[Contact],
) -> dict[int, ContentItem | None]:
    """Return the best unconsumed content item per contact id, in three queries.

    Contacts should come with ``account`` loaded; the account's industry
    counts towards the match.
    """
    contacts = list(contacts)
    ids = [contact.pk for contact in contacts]
    if not ids:
        return {}
    items = list(ContentItem.objects.filter(is_active=True))
    seen = _consumed(ids)

    return {
        contact.pk: _best(contact, items, seen.get(contact.pk, set()))
        for contact in contacts
    }


def _consumed(contact_ids: list[int]) -> dict[int, set[int]]:
    seen: dict[int, set[int]] = defaultdict(set)
    downloads = EngagementEvent.objects.filter(
        contact_id__in=contact_ids,
        type=EngagementEvent.Type.CONTENT_DOWNLOAD,
        properties__has_key="content_id",
    ).values_list("contact_id", "properties")
    for contact_id, properties in downloads:
        try:
            seen[contact_id].add(int(properties["content_id"]))
        except (TypeError, ValueError):
            continue

    offered = Touch.objects.filter(
        contact_id__in=contact_ids,
        channel=Channel.EMAIL,
        detail__startswith=OFFERED_PREFIX,
    ).values_list("contact_id", "detail")
    for contact_id, detail in offered:
        match = _OFFERED.match(detail)
        if match:
            seen[contact_id].add(int(match.group(1)))
    return seen


def _best(contact: Contact, items: list[ContentItem], seen: set[int]):
    stage = buyer_stage(contact)
    who = f"{contact.occupation} {contact.title}".casefold()
    industry = (contact.account.industry if contact.account else "").casefold()

    ranked = []
    for item in items:
        if item.buyer_stage != stage or item.pk in seen:
            continue
        persona_match = any(
            persona.casefold() in who for persona in item.personas if persona.strip()
        )
        industry_match = industry != "" and industry in {
            name.casefold() for name in item.industries
        }
        # An item aimed at someone else is no fit; a general one fits all.
        if (item.personas or item.industries) and not (persona_match or industry_match):
            continue
        ranked.append(((-persona_match, -industry_match, item.priority, item.pk), item))
    return min(ranked, key=lambda pair: pair[0])[1] if ranked else None
