"""Options of the nurture app, read when used so tests can override them."""

from django.conf import settings

DEFAULTS = {
    # How many enrollments one dispatch task claims and works at once.
    "NURTURE_DISPATCH_BATCH_SIZE": 500,
    # How long a dispatcher holds its claim before another may retry.
    "NURTURE_CLAIM_SECONDS": 300,
    # At most this many touches reach one contact in this many days, over
    # every cadence and channel; later touches wait. None turns it off.
    "NURTURE_FREQUENCY_CAP": {"touches": 3, "days": 7},
    # Attempts at sending one touch before it is marked failed for good.
    "NURTURE_MAX_SEND_ATTEMPTS": 3,
    # Minutes to wait before the 2nd, 3rd, ... attempt; the last value
    # repeats when there are more attempts than values.
    "NURTURE_RETRY_BACKOFF_MINUTES": [5, 30, 120],
    # How many events one rescoring task folds into scores at once.
    "NURTURE_RESCORE_BATCH_SIZE": 2000,
    # Events that qualify a lead directly, whatever its score: an event type,
    # or a type with one property test ("form_submit:form=pricing").
    "NURTURE_HAND_RAISE_EVENTS": ["demo_request", "form_submit:form=pricing"],
    # How many contacts one rescore-job batch recomputes from scratch.
    "NURTURE_RESCORE_JOB_BATCH_SIZE": 500,
    # Stored intent older than this is rewritten decayed by the decay task.
    "NURTURE_DECAY_PERSIST_HOURS": 24,
    # An account's intent sums this many of its contacts' highest intents.
    "NURTURE_ACCOUNT_TOP_CONTACTS": 5,
    # A lead rejected as "not now" restarts nurture after this many days.
    "NURTURE_RECYCLE_AFTER_DAYS": 30,
    # An open opportunity without activity for this many days is stale.
    "NURTURE_STALE_OPPORTUNITY_DAYS": 30,
    # Hours a rep has to accept or reject a handoff.
    "NURTURE_HANDOFF_SLA_HOURS": 4,
    # Escalation after a breach when no SLA policy applies: each step runs
    # once, this many business hours of the rep after the deadline.
    "NURTURE_DEFAULT_ESCALATION_CHAIN": [
        {"action": "remind", "after_business_hours": 0},
        {"action": "reassign", "after_business_hours": 2},
        {"action": "notify_manager", "after_business_hours": 4},
    ],
    # Webhook outbox: rows per delivery task, request timeout, first retry
    # wait (doubling each time) and attempts before a delivery fails.
    "NURTURE_WEBHOOK_BATCH_SIZE": 100,
    "NURTURE_WEBHOOK_TIMEOUT_SECONDS": 10,
    "NURTURE_WEBHOOK_BACKOFF_SECONDS": 30,
    "NURTURE_WEBHOOK_MAX_ATTEMPTS": 8,
    # Time zone for contacts whose own zone is unknown.
    "NURTURE_DEFAULT_TIME_ZONE": "UTC",
    # Minutes between runs of each scheduled engine task.
    "NURTURE_SCHEDULE_MINUTES": 1,
    # Postal address printed in every marketing email.
    "NURTURE_SENDER_ADDRESS": "Nurture Demo Ltd, 1 Example Street, London",
    # Name emails carry when neither the contact's owner nor the cadence
    # names a sender.
    "NURTURE_SENDER_NAME": "The Nurture Demo team",
    # Which class delivers each step channel, like EMAIL_BACKEND for mail.
    # Setting some keys keeps the defaults for the others.
    "NURTURE_CHANNELS": {
        "email": "nurture.channels.EmailChannel",
        "call": "nurture.channels.TaskChannel",
        "linkedin": "nurture.channels.TaskChannel",
        "direct_mail": "nurture.channels.DirectMailChannel",
        "retargeting": "nurture.channels.AudienceChannel",
    },
    # Where unsubscribe links point: scheme and host of this installation.
    "NURTURE_SITE_URL": "http://127.0.0.1:8000",
    # Days an unsubscribe link keeps working (RFC 8058 readers expect 60+).
    "NURTURE_UNSUBSCRIBE_MAX_AGE_DAYS": 365,
    # Optional mailbox for a mailto: List-Unsubscribe entry; "" for none.
    "NURTURE_UNSUBSCRIBE_MAILTO": "",
    # Days an out-of-office pause lasts when the auto-reply names no date.
    "NURTURE_OUT_OF_OFFICE_DAYS": 7,
    # Folder the direct mail export writes its CSV files to.
    "NURTURE_DIRECT_MAIL_DIR": "var/direct_mail",
    # Email provider webhooks refuse every post until their secret is set:
    # Mailgun's HTTP webhook signing key, and for Postmark and SendGrid a
    # token of our choosing put in the webhook URL (?token=) or basic auth.
    "NURTURE_MAILGUN_SIGNING_KEY": "",
    "NURTURE_POSTMARK_WEBHOOK_TOKEN": "",
    "NURTURE_SENDGRID_WEBHOOK_TOKEN": "",
}


def get(name: str):
    """Return the setting ``name``, falling back to the app default."""
    return getattr(settings, name, DEFAULTS[name])
