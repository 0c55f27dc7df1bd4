"""The default programme: the MQL cadence, scoring model and routing rules.

The scoring weights were chosen offline against the X Education leads
(Leads.csv): fit from how the lead arrived and who they are, intent from
time on site and the activity the importer maps to events. With the
threshold of 40 about a quarter of those leads become MQLs, and about 86%
of them converted against a 38.5% base rate. Sales-verdict columns (Tags,
Lead Quality, Lead Profile, Last Notable Activity, Asymmetrique scores)
and the outcome itself are not used by any rule.
"""

import datetime as dt
import logging

from django.db import transaction

from nurture.models import (
    Cadence,
    Channel,
    ContentItem,
    RoutingRule,
    ScoringModel,
    ScoringRule,
    SlaPolicy,
    Step,
)

logger = logging.getLogger(__name__)

Op = ScoringRule.Operator
FIT = ScoringRule.Kind.FIT
INTENT = ScoringRule.Kind.INTENT
DAYS = Step.WaitUnit.DAYS
BUSINESS_DAYS = Step.WaitUnit.BUSINESS_DAYS

CADENCE_NAME = "MQL nurture"
SCORING_MODEL_NAME = "Default"
MQL_THRESHOLD = 40

SIGNATURE = "{{ sender|default:'The X Education team' }}"

# (position, name, channel, wait, unit, subject, body or task instructions)
CADENCE_STEPS = [
    (
        1,
        "Welcome email",
        Channel.EMAIL,
        0,
        DAYS,
        "{{ greeting_name }}, your next step in your career",
        "Hi {{ greeting_name }},\n\n"
        "Thanks for your interest in our courses"
        "{% if contact.specialization %} in {{ contact.specialization }}"
        "{% endif %}. Most learners tell us the hardest part is choosing "
        "where to start, so I have put together the three programmes that "
        "fit professionals like you best.\n\n"
        "Would a 15-minute call this week help you decide?\n\n" + SIGNATURE,
    ),
    (
        2,
        "First call",
        Channel.CALL,
        2,
        BUSINESS_DAYS,
        "",
        "Call {{ greeting_name }}: ask what they want from a course, "
        "mention the welcome email and offer a counselling session.",
    ),
    (
        3,
        "LinkedIn connection",
        Channel.LINKEDIN,
        2,
        DAYS,
        "",
        "Send {{ greeting_name }} a connection request with a short, "
        "personal note about their goals; no sales pitch.",
    ),
    (
        4,
        "Success stories",
        Channel.EMAIL,
        3,
        DAYS,
        "How learners like you moved up, {{ greeting_name }}",
        "Hi {{ greeting_name }},\n\n"
        "Three alumni who started where you are now share what changed for "
        "them after the course{% if account %} (one of them also worked at "
        "a company like {{ account.name }}){% endif %}.\n\n"
        "{% if content %}You may also like {{ content.title }}: "
        "{{ content.url }}\n\n{% endif %}"
        "If any of it sounds like you, reply and I will set up a call.\n\n" + SIGNATURE,
    ),
    (
        5,
        "Second call",
        Channel.CALL,
        4,
        BUSINESS_DAYS,
        "",
        "Call {{ greeting_name }} again: offer the next intake date and "
        "the instalment options; log the outcome.",
    ),
    (
        6,
        "Break-up email",
        Channel.EMAIL,
        7,
        DAYS,
        "Should I close your file, {{ greeting_name }}?",
        "Hi {{ greeting_name }},\n\n"
        "I have not heard back, so I will assume now is not the right time "
        "and stop writing. If that changes, just reply to this email and I "
        "will pick it up from there.\n\n" + SIGNATURE,
    ),
]

RE_ENGAGEMENT_CADENCE = "Re-engagement"

# Recycled leads and stale deals; recycling delays the first step by
# NURTURE_RECYCLE_AFTER_DAYS (see nurture.services.lifecycle).
RE_ENGAGEMENT_STEPS = [
    (
        1,
        "Checking back in",
        Channel.EMAIL,
        0,
        DAYS,
        "Is now a better time, {{ greeting_name }}?",
        "Hi {{ greeting_name }},\n\n"
        "When we last spoke the timing was not right. A few things have "
        "changed since: new intakes, shorter formats and more ways to pay.\n\n"
        "If you would like a fresh look, reply and I will send the options "
        "that fit you now.\n\n" + SIGNATURE,
    ),
    (
        2,
        "Re-engagement call",
        Channel.CALL,
        5,
        BUSINESS_DAYS,
        "",
        "Call {{ greeting_name }}: ask whether their plans changed since "
        "they were recycled and whether a counselling session would help.",
    ),
]

# (name, kind, field, operator, value, event_type, points)
SCORING_RULES = [
    # Fit: who the lead is and how they reached us.
    ("Came through the lead add form", FIT, "lead_origin", Op.EQUALS,
     "Lead Add Form", "", 30),
    ("Referred or from the Welingak site", FIT, "lead_source", Op.IN,
     "Reference,Welingak Website", "", 15),
    ("Started in the chat widget", FIT, "lead_source", Op.EQUALS,
     "Olark Chat", "", -10),
    ("Working professional", FIT, "occupation", Op.EQUALS,
     "Working Professional", "", 30),
    ("Occupation unknown", FIT, "occupation", Op.IS_BLANK, "", "", -15),
    ("Asked not to be emailed", FIT, "do_not_email", Op.IS_TRUE, "", "", -15),
    # Intent: what they did; decays with a 30-day half-life.
    ("Ten minutes or more on the site", INTENT, "seconds_on_site", Op.GTE,
     "600", "web_activity", 25),
    ("Twenty minutes or more on the site", INTENT, "seconds_on_site", Op.GTE,
     "1200", "web_activity", 10),
    ("Five or more visits", INTENT, "visits", Op.GTE, "5", "web_activity", 5),
    ("Opened an email", INTENT, "", Op.EQUALS, "", "email_open", 3),
    ("Clicked an email link", INTENT, "", Op.EQUALS, "", "email_click", 5),
    ("Submitted a form", INTENT, "", Op.EQUALS, "", "form_submit", 5),
    ("Received an SMS from sales", INTENT, "", Op.EQUALS, "", "sms_sent", 20),
    ("Had a phone conversation", INTENT, "", Op.EQUALS, "", "call_connected", 25),
    ("Replied to an email", INTENT, "", Op.EQUALS, "", "email_reply", 30),
    ("Visited the pricing page", INTENT, "", Op.EQUALS, "", "pricing_visit", 20),
    ("Requested a demo", INTENT, "", Op.EQUALS, "", "demo_request", 40),
    ("Booked a meeting", INTENT, "", Op.EQUALS, "", "meeting_booked", 50),
    ("Email bounced", INTENT, "", Op.EQUALS, "", "email_bounce", -20),
    ("Unsubscribed", INTENT, "", Op.EQUALS, "", "unsubscribe", -30),
]  # fmt: skip

# Countries outside India that the leads come from; they go to East.
ABROAD = (
    "United States,United Arab Emirates,Singapore,Saudi Arabia,United Kingdom,"
    "Australia,Qatar,Bahrain,Hong Kong,Oman,France,Kuwait,Nigeria,South Africa,"
    "Canada,Germany,Sweden,Philippines,Uganda,Ghana,Italy,Netherlands,Belgium,"
    "China,Bangladesh,Asia/Pacific Region,Malaysia,Switzerland,Denmark,Kenya,"
    "Indonesia,Liberia,Russia,Sri Lanka,Tanzania,Vietnam"
)

NAMED_ACCOUNT_RULE = "Named accounts: the account owner"

# (position, name, field, values, region): Mumbai and Maharashtra to West,
# the rest of India to Central, abroad to East, anything unknown to Central.
ROUTING_RULES = [
    (10, "West: Mumbai, Thane and Maharashtra", "city",
     "Mumbai,Thane & Outskirts,Other Cities of Maharashtra", "West"),
    (20, "Central: rest of India", "country", "India", "Central"),
    (30, "East: outside India", "country", ABROAD, "East"),
    (40, "Central: everyone else", "", "", "Central"),
]  # fmt: skip


def ensure_default_programme() -> dict[str, list[str]]:
    """Create the default cadence, scoring model and routing rules if missing.

    Everything is looked up by name, and what exists is left as it is, so
    running it again changes nothing and keeps operators' edits. Return the
    names of what was created, by kind.
    """
    created: dict[str, list[str]] = {
        "cadences": [],
        "steps": [],
        "scoring_models": [],
        "scoring_rules": [],
        "routing_rules": [],
        "sla_policies": [],
        "content_items": [],
    }
    with transaction.atomic():
        _ensure_cadence(created)
        _ensure_re_engagement(created)
        _ensure_scoring(created)
        _ensure_routing(created)
        _ensure_content(created)
        _ensure_sla_policy(created)
    logger.info(
        "Default programme ensured: %s",
        {kind: len(names) for kind, names in created.items()},
    )
    return created


def _ensure_cadence(created: dict[str, list[str]]) -> None:
    _ensure_steps(
        CADENCE_NAME,
        {
            "description": "Warm new MQLs up over two weeks by email, phone "
            "and LinkedIn until a rep takes over.",
            "send_window_start": dt.time(8, 0),
            "send_window_end": dt.time(18, 0),
            "send_weekdays": [1, 2, 3, 4, 5],
            "exit_on_reply": True,
            "exit_on_meeting": True,
            "exit_on_handoff": True,
        },
        CADENCE_STEPS,
        created,
    )


def _ensure_re_engagement(created: dict[str, list[str]]) -> None:
    _ensure_steps(
        RE_ENGAGEMENT_CADENCE,
        {
            "description": "Win back recycled leads and stale deals.",
            "send_window_start": dt.time(8, 0),
            "send_window_end": dt.time(18, 0),
            "send_weekdays": [1, 2, 3, 4, 5],
            "reenrollment": Cadence.Reenrollment.AFTER_DAYS,
            "reenroll_after_days": 30,
        },
        RE_ENGAGEMENT_STEPS,
        created,
    )


def _ensure_steps(name, defaults, steps, created: dict[str, list[str]]) -> None:
    """Create a cadence and whichever of its steps are missing, by position."""
    cadence, new = Cadence.objects.get_or_create(name=name, defaults=defaults)
    if new:
        created["cadences"].append(cadence.name)
    for position, step_name, channel, wait, unit, subject, text in steps:
        is_email = channel == Channel.EMAIL
        _, new = Step.objects.get_or_create(
            cadence=cadence,
            position=position,
            defaults={
                "name": step_name,
                "channel": channel,
                "wait_amount": wait,
                "wait_unit": unit,
                "subject": subject,
                "body": text if is_email else "",
                "task_instructions": "" if is_email else text,
            },
        )
        if new:
            created["steps"].append(step_name)


def _ensure_scoring(created: dict[str, list[str]]) -> None:
    model = ScoringModel.objects.filter(name=SCORING_MODEL_NAME).first()
    if model is None:
        # Only one model may be the default; a new one takes over.
        ScoringModel.objects.filter(is_default=True).update(is_default=False)
        model = ScoringModel.objects.create(
            name=SCORING_MODEL_NAME,
            is_default=True,
            mql_threshold=MQL_THRESHOLD,
            intent_half_life_days=30,
        )
        created["scoring_models"].append(model.name)
    for name, kind, field, operator, value, event_type, points in SCORING_RULES:
        _, new = ScoringRule.objects.get_or_create(
            model=model,
            name=name,
            defaults={
                "kind": kind,
                "field": field,
                "operator": operator,
                "value": value,
                "event_type": event_type,
                "points": points,
            },
        )
        if new:
            created["scoring_rules"].append(name)


def _ensure_routing(created: dict[str, list[str]]) -> None:
    taken = set(RoutingRule.objects.values_list("position", flat=True))
    # A named account's contacts go to its owner before any territory.
    wanted = [(5, NAMED_ACCOUNT_RULE, {"match": RoutingRule.Match.NAMED_ACCOUNT})]
    wanted += [
        (position, name, {"field": field, "values": values, "region": region})
        for position, name, field, values, region in ROUTING_RULES
    ]
    for position, name, fields in wanted:
        if RoutingRule.objects.filter(name=name).exists():
            continue
        # Positions are unique: an operator's rule keeps its place.
        while position in taken:
            position += 1
        RoutingRule.objects.create(position=position, name=name, **fields)
        taken.add(position)
        created["routing_rules"].append(name)


# The default SLA: first touch within 4 business hours of the rep; after a
# breach remind at once, reassign after 2 more business hours and tell the
# manager after 4. Position 1000 leaves room for operators' policies above.
DEFAULT_SLA_POLICY = "First touch within 4 business hours"
DEFAULT_ESCALATION_CHAIN = [
    {"action": "remind", "after_business_hours": 0},
    {"action": "reassign", "after_business_hours": 2},
    {"action": "notify_manager", "after_business_hours": 4},
]


def _ensure_sla_policy(created: dict[str, list[str]]) -> None:
    if SlaPolicy.objects.filter(name=DEFAULT_SLA_POLICY).exists():
        return
    taken = set(SlaPolicy.objects.values_list("position", flat=True))
    position = 1000
    while position in taken:
        position += 1
    SlaPolicy.objects.create(
        position=position,
        name=DEFAULT_SLA_POLICY,
        response_business_hours=4,
        escalation_chain=DEFAULT_ESCALATION_CHAIN,
    )
    created["sla_policies"].append(DEFAULT_SLA_POLICY)


# (title, path, kind, buyer stage, personas, priority): what the emails may
# offer; "content" in a step's template picks the best unread one.
CONTENT_ITEMS = [
    ("Choosing an online course that fits a full-time job",
     "guides/course-for-working-professionals", "guide", "awareness",
     ["Working Professional"], 10),
    ("Five skills employers ask for this year", "articles/skills-in-demand",
     "article", "awareness", [], 50),
    ("From student to data analyst in one year", "stories/student-to-analyst",
     "case_study", "consideration", ["Student"], 10),
    ("How a sales manager moved into product management",
     "stories/sales-to-product", "case_study", "consideration",
     ["Working Professional"], 10),
    ("Webinar: a week on the programme, live", "webinars/a-week-on-the-programme",
     "webinar", "consideration", [], 50),
    ("Book a counselling session and tour the course platform",
     "counselling", "demo", "decision", [], 50),
]  # fmt: skip
CONTENT_BASE_URL = "https://www.example.com/"


def _ensure_content(created: dict[str, list[str]]) -> None:
    for title, path, kind, stage, personas, priority in CONTENT_ITEMS:
        _, new = ContentItem.objects.get_or_create(
            title=title,
            defaults={
                "url": CONTENT_BASE_URL + path,
                "kind": kind,
                "buyer_stage": stage,
                "personas": personas,
                "priority": priority,
            },
        )
        if new:
            created["content_items"].append(title)
