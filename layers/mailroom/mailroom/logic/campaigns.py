"""Campaign administration and the scheduled dispatcher.

Status machine (every arrow a conditional write, so it happens once)::

    draft <-> scheduled --(send now | due at a schedule firing)--> sending --> sent
      \\___________\\______________________________________________/
                             cancel --> cancelled

A scheduled campaign goes out at the first firing of the newsletter schedule at or after
its ``send_at``; "send now" starts a draft or scheduled campaign at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailroom.errors import Conflict, NotFound
from mailroom.links import Links
from mailroom.logic.delivery import Sender
from mailroom.logic.fanout import resume_stalled, start_campaign
from mailroom.logic.ports import CampaignStore, MailSender, Queue, Subscribers
from mailroom.mail import to_mime
from mailroom.models import (
    Campaign,
    CampaignCreate,
    CampaignStatus,
    CampaignUpdate,
    PreviewRequest,
    Recipient,
    TestSendRequest,
    iso,
    utcnow,
)
from mailroom.observability import logger

# mailroom.content is imported where it is used: the dispatcher (dispatch_due) never renders,
# and the content module loads Jinja2's sandbox and markdown-it (bench.coldstart).
if TYPE_CHECKING:
    from mailroom.content import CampaignContent

FINAL = (CampaignStatus.SENT, CampaignStatus.CANCELLED)


def content_of(campaign: Campaign | CampaignCreate) -> CampaignContent:
    from mailroom.content import CampaignContent

    return CampaignContent(campaign.subject, campaign.content, campaign.format.value)


@dataclass
class CampaignAdmin:
    """The admin API's operations on campaigns (handlers map NotFound to 404, Conflict to 409)."""

    campaigns: Any  # CampaignRepository (with create/list/update_content/cancel besides CampaignStore)
    fanout_queue: Queue
    subscribers: Subscribers
    mailer: MailSender
    sender: Sender
    links: Links
    segments: int
    clock: Callable[[], datetime] = utcnow

    def _get(self, campaign_id: str) -> Campaign:
        campaign: Campaign | None = self.campaigns.get(campaign_id)
        if campaign is None:
            raise NotFound(f"No campaign {campaign_id}.")
        return campaign

    def create(self, request: CampaignCreate) -> Campaign:
        from mailroom.content import validate

        validate(content_of(request), self.sender.name)
        now = iso(self.clock())
        campaign = Campaign(
            id=uuid.uuid4().hex,
            subject=request.subject,
            content=request.content,
            format=request.format,
            status=CampaignStatus.SCHEDULED if request.send_at else CampaignStatus.DRAFT,
            send_at=iso(request.send_at) if request.send_at else None,
            created_at=now,
            updated_at=now,
        )
        self.campaigns.create(campaign)
        logger.info("campaign created", extra={"campaign_id": campaign.id, "status": campaign.status.value})
        return campaign

    def get(self, campaign_id: str) -> Campaign:
        return self._get(campaign_id)

    def update(self, campaign_id: str, request: CampaignUpdate) -> Campaign:
        from mailroom.content import validate

        campaign = self._get(campaign_id)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise Conflict(f"The campaign is {campaign.status.value}; only drafts and scheduled campaigns can change.")
        changes: dict[str, Any] = {
            name: getattr(request, name).value if name == "format" else getattr(request, name)
            for name in ("subject", "content", "format")
            if getattr(request, name) is not None
        }
        if request.send_at is not None:
            changes["send_at"] = iso(request.send_at)
        merged = campaign.model_copy(update={k: v for k, v in changes.items() if k != "send_at"})
        validate(content_of(Campaign.model_validate(merged.model_dump())), self.sender.name)
        unschedule = "send_at" in request.model_fields_set and request.send_at is None
        updated: Campaign | None = self.campaigns.update_content(campaign_id, changes, unschedule, iso(self.clock()))
        if updated is None:
            raise Conflict("The campaign changed state meanwhile; reload it.")
        return updated

    def send_now(self, campaign_id: str, correlation_id: str | None = None) -> Campaign:
        campaign = self._get(campaign_id)
        if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise Conflict(f"The campaign is {campaign.status.value}; it cannot be sent again.")
        started = start_campaign(
            campaign, self.campaigns, self.fanout_queue, self.segments, self.clock(), correlation_id
        )
        if started is None:
            raise Conflict("The campaign was started or cancelled meanwhile.")
        return started

    def cancel(self, campaign_id: str) -> Campaign:
        campaign = self._get(campaign_id)
        if campaign.status in FINAL:
            raise Conflict(f"The campaign is already {campaign.status.value}.")
        sending = campaign.status is CampaignStatus.SENDING
        cancelled: Campaign | None = self.campaigns.cancel(campaign_id, iso(self.clock()), sending)
        if cancelled is None:
            raise Conflict("The campaign finished or was cancelled meanwhile.")
        logger.info("campaign cancelled", extra={"campaign_id": campaign_id})
        return cancelled

    def _recipient(self, email: str | None, name: str | None) -> Recipient:
        """The subscriber with this address if there is one, else a sample recipient."""
        from mailroom.content import SAMPLE

        if email:
            subscriber = self.subscribers.get(email)
            if subscriber is not None:
                return Recipient(id=subscriber.id, email=subscriber.email, name=name or subscriber.name)
            return Recipient(id=SAMPLE.id, email=email, name=name)
        return SAMPLE if name is None else SAMPLE.model_copy(update={"name": name})

    def preview(self, content: CampaignContent, request: PreviewRequest) -> dict[str, str]:
        from mailroom.content import CampaignRenderer

        recipient = self._recipient(request.email, request.name)
        mail = CampaignRenderer(content, self.sender.name, self.links).render(recipient)
        return {"to": mail.to, "subject": mail.subject, "html": mail.html, "text": mail.text}

    def test_send(self, campaign_id: str, request: TestSendRequest) -> dict[str, str]:
        """Send one copy now, subject marked [Test]; not a campaign mail (no record, no counters)."""
        from mailroom.content import CampaignRenderer

        campaign = self._get(campaign_id)
        recipient = self._recipient(request.email, request.name)
        mail = CampaignRenderer(content_of(campaign), self.sender.name, self.links).render(
            recipient, {"kind": "test", "campaign": campaign.id}
        )
        mail = mail.model_copy(update={"subject": f"[Test] {mail.subject}"[:998]})
        message_id = self.mailer.send(
            to_mime(mail, self.sender.address, self.sender.name), self.sender.address, mail.to, mail.tags
        )
        logger.info("test mail sent", extra={"campaign_id": campaign_id, "message_id": message_id})
        return {"message_id": message_id, "to": mail.to}


def dispatch_due(
    campaigns: CampaignStore,
    fanout_queue: Queue,
    segments: int,
    at: datetime,
    correlation_id: str | None = None,
) -> dict[str, list[str]]:
    """Start every scheduled campaign due at ``at``; resume stalled fan-outs.

    Safe to run twice or concurrently: each start is a conditional write.
    """
    started: list[str] = []
    for campaign in campaigns.with_status(CampaignStatus.SCHEDULED, due_before=iso(at)):
        if start_campaign(campaign, campaigns, fanout_queue, segments, at, correlation_id, due=True):
            started.append(campaign.id)
        else:
            logger.info("campaign already started elsewhere", extra={"campaign_id": campaign.id})
    resumed = resume_stalled(campaigns, fanout_queue, at)
    return {"started": started, "resumed": resumed}
