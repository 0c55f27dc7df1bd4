"""Import the X Education lead export (Leads.csv) as contacts and events.

Only what was known when a lead arrived becomes something the engine reads.
The columns a salesperson filled in after talking to the lead (Tags, Lead
Quality, Lead Profile, the Asymmetrique indices, Last Notable Activity) are
kept only under ``attributes["after_contact"]``, and Converted goes to the
held-out ``known_converted``.
"""

import dataclasses
import datetime as dt
import logging
import os
import time

from django.db import transaction

from crm.models import Contact, EngagementEvent, LifecycleStage

from .base import (
    DEFAULT_BATCH_SIZE,
    BadValue,
    ImportReport,
    Row,
    apply_values,
    batched,
    parse_float,
    parse_int,
    parse_yes_no,
    read_rows,
    update_changed,
)

logger = logging.getLogger(__name__)

SOURCE = "xedu"
PROSPECT_ID = "Prospect ID"

# Source names as the export spells them most often; other spellings of the
# same name (google, GOOGLE) fold to these.
KNOWN_SOURCES = (
    "Google",
    "Bing",
    "Direct Traffic",
    "Olark Chat",
    "Organic Search",
    "Reference",
    "Welingak Website",
    "Referral Sites",
    "Facebook",
    "Click2call",
    "Social Media",
    "Live Chat",
    "Press_Release",
    "Pay per Click Ads",
    "WeLearn",
)
CANONICAL_SOURCES = {name.casefold(): name for name in KNOWN_SOURCES}

# Country cells that say nothing about where the lead is.
UNKNOWN_COUNTRIES = frozenset({"unknown", "asia/pacific region"})

# Profile columns the lead filled in on arrival: column -> attribute key.
PROFILE_TEXT = {
    "How did you hear about X Education": "heard_about_us",
    "What matters most to you in choosing a course": "what_matters_most",
}
PROFILE_FLAGS = {
    "Search": "saw_search_ad",
    "Magazine": "saw_magazine_ad",
    "Newspaper Article": "saw_newspaper_article",
    "X Education Forums": "saw_forum_post",
    "Newspaper": "saw_newspaper_ad",
    "Digital Advertisement": "saw_digital_ad",
    "Through Recommendations": "came_by_recommendation",
    "Receive More Updates About Our Courses": "wants_course_updates",
    "Update me on Supply Chain Content": "wants_supply_chain_content",
    "Get updates on DM Content": "wants_dm_content",
    "A free copy of Mastering The Interview": "wants_interview_guide",
}

# Columns written by sales after contact: never read by the engine.
AFTER_CONTACT = {
    "Tags": "tags",
    "Lead Quality": "lead_quality",
    "Lead Profile": "lead_profile",
    "Last Notable Activity": "last_notable_activity",
    "Asymmetrique Activity Index": "asymmetrique_activity_index",
    "Asymmetrique Profile Index": "asymmetrique_profile_index",
    "Asymmetrique Activity Score": "asymmetrique_activity_score",
    "Asymmetrique Profile Score": "asymmetrique_profile_score",
    "I agree to pay the amount through cheque": "agrees_to_pay_by_cheque",
}

T = EngagementEvent.Type
ACTIVITY_TYPES = {
    "Email Opened": T.EMAIL_OPEN,
    "Email Link Clicked": T.EMAIL_CLICK,
    "Email Bounced": T.EMAIL_BOUNCE,
    "Unsubscribed": T.UNSUBSCRIBE,
    "Page Visited on Website": T.PAGE_VIEW,
    "Form Submitted on Website": T.FORM_SUBMIT,
    "Converted to Lead": T.FORM_SUBMIT,
    "Olark Chat Conversation": T.CHAT,
    "SMS Sent": T.SMS_SENT,
    "Had a Phone Conversation": T.CALL_CONNECTED,
    "Unreachable": T.UNREACHABLE,
}

REQUIRED_COLUMNS = (
    PROSPECT_ID,
    "Lead Number",
    "Lead Origin",
    "Lead Source",
    "Do Not Email",
    "Do Not Call",
    "Converted",
    "TotalVisits",
    "Total Time Spent on Website",
    "Page Views Per Visit",
    "Last Activity",
)


@dataclasses.dataclass
class EventSpec:
    external_id: str
    type: str
    properties: dict


@dataclasses.dataclass
class Lead:
    """One parsed row: the contact's values and the events it brings."""

    row_number: int
    external_id: str
    fields: dict
    attributes: dict
    unsubscribed: bool
    events: list[EventSpec]


def import_leads(
    path: str | os.PathLike, *, now: dt.datetime, batch_size: int | None = None
) -> ImportReport:
    """Create or update one contact per prospect, with its engagement events.

    A row with a missing Prospect ID, a repeated one or an unusable value is
    reported and left out; the other rows are saved. Re-importing the file
    changes nothing: events keep their first ``occurred_at`` and contacts
    whose values are the same are not written.
    """
    started = time.monotonic()
    report = ImportReport()
    rows = read_rows(path, required=REQUIRED_COLUMNS, report=report)

    leads, first_row = [], {}
    for row in rows:
        try:
            lead = parse_lead(row)
        except BadValue as exc:
            report.add_error(row.number, exc.field, exc.reason)
            continue
        if lead.external_id in first_row:
            report.add_error(
                row.number,
                PROSPECT_ID,
                f"repeats the prospect on row {first_row[lead.external_id]}",
            )
            continue
        first_row[lead.external_id] = row.number
        leads.append(lead)

    for batch in batched(leads, batch_size or DEFAULT_BATCH_SIZE):
        save_leads(batch, report, now=now)

    report.seconds = time.monotonic() - started
    logger.info("Imported leads: %s", report.summary())
    return report


def parse_lead(row: Row) -> Lead:
    """Turn one Leads.csv row into a Lead, or raise BadValue."""
    prospect_id = row.get(PROSPECT_ID)
    if not prospect_id:
        raise BadValue(PROSPECT_ID, "is missing")
    external_id = f"{SOURCE}:{prospect_id}"

    web = {
        "visits": parse_int(row, "TotalVisits"),
        "seconds_on_site": parse_int(row, "Total Time Spent on Website"),
        "pages_per_visit": parse_float(row, "Page Views Per Visit"),
    }
    web = {key: value for key, value in web.items() if value is not None}
    converted = parse_yes_no(row, "Converted")
    fields = {
        "lead_source": canonical_source(row.get("Lead Source")),
        "lead_origin": row.get("Lead Origin"),
        "country": canonical_country(row.get("Country")),
        "city": row.get("City"),
        "occupation": row.get("What is your current occupation"),
        "specialization": row.get("Specialization"),
        "do_not_email": bool(parse_yes_no(row, "Do Not Email")),
        "do_not_call": bool(parse_yes_no(row, "Do Not Call")),
        "known_converted": converted,
    }

    attributes = {"lead_number": row.get("Lead Number")}
    attributes.update({key: row.get(col) for col, key in PROFILE_TEXT.items()})
    for column, key in PROFILE_FLAGS.items():
        attributes[key] = parse_yes_no(row, column)
    attributes["after_contact"] = {
        key: row.get(column) for column, key in AFTER_CONTACT.items()
    }

    events = []
    if web:
        events.append(EventSpec(f"{external_id}:web", T.WEB_ACTIVITY, web))
    activity = row.get("Last Activity")
    if activity:
        events.append(last_activity_event(external_id, activity))

    return Lead(
        row_number=row.number,
        external_id=external_id,
        fields=fields,
        attributes=attributes,
        unsubscribed=activity == "Unsubscribed",
        events=events,
    )


def canonical_source(value: str) -> str:
    """Fold the known spellings of a lead source to one."""
    return CANONICAL_SOURCES.get(value.casefold(), value)


def canonical_country(value: str) -> str:
    """Blank out country cells that name no country."""
    return "" if value.casefold() in UNKNOWN_COUNTRIES else value


def last_activity_event(external_id: str, label: str) -> EventSpec:
    """Map a Last Activity label to the closest engagement event."""
    event_type = ACTIVITY_TYPES.get(label, T.OTHER)
    properties = {"label": label}
    if event_type == T.EMAIL_BOUNCE:
        # The export does not say whether the bounce was hard, so the
        # contact's hard_bounced_at stays empty.
        properties["bounce"] = "unknown"
    return EventSpec(f"{external_id}:last", event_type, properties)


def save_leads(batch: list[Lead], report: ImportReport, *, now: dt.datetime):
    """Save one batch of leads and their events with a fixed number of queries."""
    with transaction.atomic():
        wanted = [lead.external_id for lead in batch]
        existing = {
            contact.external_id: contact
            # The external id index covers only contacts that have one.
            for contact in Contact.objects.filter(external_id__in=wanted)
            .exclude(external_id="")
            .order_by()
        }

        new, changes = [], []
        for lead in batch:
            contact = existing.get(lead.external_id)
            if contact is None:
                new.append(new_contact(lead, now=now))
                continue
            changed = merge_lead(contact, lead, now=now)
            if changed:
                changes.append((contact, changed))
            else:
                report.unchanged += 1
        Contact.objects.bulk_create(new)
        report.created += len(new)
        report.updated += update_changed(Contact, changes, now=now)

        contact_ids = {c.external_id: c.pk for c in [*new, *existing.values()]}
        save_events(batch, contact_ids, report, now=now)


def new_contact(lead: Lead, *, now: dt.datetime) -> Contact:
    return Contact(
        external_id=lead.external_id,
        lifecycle_stage=LifecycleStage.LEAD,
        attributes=lead.attributes,
        unsubscribed_at=now if lead.unsubscribed else None,
        **lead.fields,
    )


def merge_lead(contact: Contact, lead: Lead, *, now: dt.datetime) -> list[str]:
    """Bring an existing contact in line with its row; return what changed.

    Suppression only ever tightens: a row saying "No" does not clear a
    do-not-email flag or an unsubscribe recorded since the last import.
    The lifecycle stage is left to the engine.
    """
    values = dict(lead.fields)
    values["do_not_email"] = contact.do_not_email or values["do_not_email"]
    values["do_not_call"] = contact.do_not_call or values["do_not_call"]
    values["attributes"] = {**contact.attributes, **lead.attributes}
    if lead.unsubscribed and contact.unsubscribed_at is None:
        values["unsubscribed_at"] = now
    return apply_values(contact, values)


def save_events(
    batch: list[Lead],
    contact_ids: dict[str, int],
    report: ImportReport,
    *,
    now: dt.datetime,
):
    """Record each lead's events once; an event already stored is left as is."""
    wanted = [event.external_id for lead in batch for event in lead.events]
    stored = set(
        EngagementEvent.objects.filter(source=SOURCE, external_id__in=wanted)
        .exclude(external_id="")
        .order_by()
        .values_list("external_id", flat=True)
    )
    events = [
        EngagementEvent(
            contact_id=contact_ids[lead.external_id],
            type=event.type,
            source=SOURCE,
            occurred_at=now,
            properties=event.properties,
            external_id=event.external_id,
        )
        for lead in batch
        for event in lead.events
        if event.external_id not in stored
    ]
    EngagementEvent.objects.bulk_create(events)
    report.count("events_created", len(events))
