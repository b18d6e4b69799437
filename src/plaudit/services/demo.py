"""Load the demo program into a tenant: the people, their attributes, linked identities."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources

from plaudit.demo import DemoPerson, people
from plaudit.domain.events import IncomingEvent
from plaudit.domain.players import Identity
from plaudit.errors import Conflict
from plaudit.services.badges import BadgeService
from plaudit.services.ingest import IngestService
from plaudit.services.players import PlayerPatch, PlayerService
from plaudit.services.rulesets import RuleSetService
from plaudit.services.webhooks import WebhookService


def load_demo_program(
    ingest: IngestService,
    players: PlayerService,
    tenant_id: str,
    team: list[DemoPerson] | None = None,
) -> int:
    """Idempotent: the HRIS 'hired' events dedupe, attributes and links converge."""
    team = team or people()
    now = ingest.clock()
    hired = [
        IncomingEvent(
            key=f"hris-hired-{p.crm_id}",
            source="hris",
            type="employee.hired",
            actor=p.email,
            occurred_at=now - timedelta(days=30),
            properties={"team": p.team, "region": p.region},
        )
        for p in team
    ]
    ingest.ingest(tenant_id, hired)
    for p in team:
        ref = f"hris:{p.email}"
        players.update(
            tenant_id,
            ref,
            PlayerPatch(
                display_name=p.name,
                time_zone=p.time_zone,
                attributes={
                    "team": p.team,
                    "region": p.region,
                    "role": "seller" if p.seller else "learner",
                },
            ),
        )
        for identity in (Identity("lms", p.email), Identity("crm", p.crm_id)):
            try:
                players.link_identity(tenant_id, ref, identity)
            except Conflict:
                # Events from that source arrived before the HRIS record: same person.
                players.merge(tenant_id, ref, f"{identity.source}:{identity.external_id}")
    return len(team)


def ensure_demo_rules(rulesets: RuleSetService, tenant_id: str) -> bool:
    """Publish the demo rule set unless the tenant already has a live one."""
    with rulesets.db.read() as uow:
        if uow.rulesets.live(tenant_id) is not None:
            return False
    source = resources.files("plaudit").joinpath("demo_rules.yaml").read_text("utf-8")
    view = rulesets.create(tenant_id, "Demo program", source)
    rulesets.publish(tenant_id, view.record.id, "demo", "the demo program")
    return True


def ensure_demo_webhook(webhooks: WebhookService, tenant_id: str, url: str) -> list[str]:
    """Subscribe the demo's own inbox (badges, levels, closings); its signing secrets."""
    found = next((s for s in webhooks.all_of(tenant_id) if s.url == url), None)
    if found is None:
        found = webhooks.create(
            tenant_id, {"url": url, "description": "the demo's inbox (plaudit serve --demo)"}
        ).subscription
    elif not found.enabled:
        found = webhooks.update(tenant_id, found.id, {"enabled": True})
    return [r.secret for r in webhooks.secrets(tenant_id, found.id)]


def ensure_demo_badges(
    badges: BadgeService, tenant_id: str, team: list[DemoPerson] | None = None
) -> None:
    """A badge awarded by hand (with evidence), to show the issuance trail."""
    team = team or people()
    if any(v.badge.id == "mentor" for v in badges.all_of(tenant_id)):
        return
    badges.save(
        tenant_id,
        "mentor",
        {
            "name": "Mentor",
            "description": "Coached a colleague through onboarding.",
            "narrative": "Awarded by a manager, with the coaching notes as evidence.",
            "tags": ["people"],
            "alignment": [{"targetName": "Coaching", "targetFramework": "Company skills"}],
        },
        create=True,
    )
    badges.award(
        tenant_id,
        "mentor",
        f"hris:{team[0].email}",
        {"narrative": "Six onboarding sessions with a new hire."},
        "coached a new colleague",
        "demo",
    )
