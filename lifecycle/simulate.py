"""A seeded simulator of a customer population, emitting inbound CloudEvents.

``simulate()`` produces the JSON lines an upstream estate (web shop, web
tracker, marketing automation, sales CRM, support desk, NPS surveys) would
send for a population of customers over a period: most people only browse,
some register, get qualified (BANT) or disqualified, about a third buy, a
share buys again on later days, some go quiet for months and some come back;
buyers answer NPS surveys, promoters refer friends, tickets are opened and
resolved, B2B-like customers get deals that move through the sales pipeline.

The result is in *arrival order*: sorted by business time, except that a
fraction of events arrive late (some days after their business time) and a
few malformed lines are mixed in, as a real feed would have.

Everything is derived from the seed with :class:`random.Random`; nothing
depends on the wall clock or on hash randomisation, so the same arguments
give the same bytes on every run.  Standard library only.
"""

from __future__ import annotations

import json
import random
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = [
    "ENVELOPE_KEYS",
    "EVENT_TYPES",
    "MALFORMED_KINDS",
    "SimulatedLine",
    "purchases_only",
    "simulate",
    "simulate_annotated",
    "simulate_iter",
]

DAY = 86_400
HOUR = 3_600
MINUTE = 60

#: Every inbound event type, with the upstream system that emits it by default.
EVENT_TYPES: dict[str, str] = {
    "crm.customer.registered": "shop/checkout",
    "crm.profile.updated": "shop/checkout",
    "crm.consent.changed": "marketing/automation",
    "crm.interaction.recorded": "web/tracker",
    "crm.lead.qualified": "crm/sales",
    "crm.stage.change.requested": "crm/sales",
    "crm.purchase.recorded": "shop/checkout",
    "crm.refund.recorded": "shop/checkout",
    "crm.feedback.submitted": "survey/nps",
    "crm.referral.made": "marketing/automation",
    "crm.ticket.opened": "support/desk",
    "crm.ticket.resolved": "support/desk",
    "crm.deal.opened": "crm/sales",
    "crm.deal.stage.changed": "crm/sales",
    "crm.deal.won": "crm/sales",
    "crm.deal.lost": "crm/sales",
    "crm.customer.erasure.requested": "support/desk",
}

#: The top-level keys of every well-formed line (old-version feedback adds ``dataversion``).
ENVELOPE_KEYS: tuple[str, ...] = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
)

#: The kinds of malformed line mixed into the feed.
MALFORMED_KINDS: tuple[str, ...] = (
    "not_json",
    "missing_subject",
    "negative_amount",
    "nps_out_of_range",
    "unknown_type",
)

_INTERACTION_SOURCE = {
    "web": "web/tracker",
    "email": "marketing/automation",
    "social": "marketing/automation",
    "event": "marketing/automation",
    "call": "crm/sales",
    "meeting": "crm/sales",
    "chat": "support/desk",
    "other": "crm/sales",
}

# Relative weight of each UTC hour of the day for customer activity.
_HOUR_CUM: list[int] = []
_acc = 0
for _w in (1, 1, 1, 1, 1, 2, 3, 5, 7, 9, 10, 10, 10, 10, 10, 10, 9, 9, 9, 9, 8, 6, 4, 2):
    _acc += _w
    _HOUR_CUM.append(_acc)
del _acc, _w
_HOURS = list(range(24))

_FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "María", "José", "Zoë", "Björn", "Chen", "Priya",
    "Aiko", "Omar", "Fatima", "Lars", "Sofia", "Mateo", "Emma", "Noah", "Olivia", "Liam",
    "Amara", "Kwame", "Yuki", "Inês", "Hannah", "Jonas", "Lucía", "Mohammed", "Elif", "Kai",
    "Nadia", "Pierre", "Renée", "Søren", "Ingrid", "Tomás", "Leila", "Arjun", "Mei", "Oscar",
)
_LAST_NAMES = (
    "Moreno", "Lovelace", "Hopper", "Torvalds", "García", "Müller", "Nguyen", "Smith", "Johnson",
    "Kim", "Tanaka", "Okafor", "Haddad", "Kowalski", "Rossi", "Dubois", "Jensen", "Silva",
    "Patel", "Novak", "Schmidt", "O'Brien", "Andersson", "Costa", "Yilmaz", "Mensah", "Ivanova",
    "Fernández", "Laurent", "Berg", "Sato", "Walker", "Brown", "Khan", "Li", "Martin",
)
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
_COUNTRIES = (
    ("US", 30), ("GB", 9), ("DE", 8), ("FR", 6), ("CA", 5), ("ES", 4), ("IT", 4), ("NL", 4),
    ("AU", 4), ("BR", 4), ("MX", 3), ("IN", 5), ("JP", 3), ("SE", 2), ("PL", 3), ("IE", 2),
    ("PT", 2), ("ZA", 2),
)
_EURO_COUNTRIES = ("DE", "FR", "ES", "IT", "NL", "IE", "PT")
_STREETS = ("Market St", "High Street", "Elm Avenue", "Harbour Road", "Station Road", "Oak Lane",
            "Bahnhofstraße", "Rue de la Paix", "Calle Mayor", "Via Roma")
_CITIES = ("Springfield", "Riverton", "Lakeside", "Berlin", "Lyon", "Madrid", "Milan",
           "Utrecht", "Toronto", "Melbourne", "Dublin", "Porto")
_COMPANY_A = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay",
              "Soylent", "Tyrell", "Cyberdyne", "Wonka", "Aperture", "Black Mesa", "Pied Piper",
              "Dunder", "Oceanic", "Monarch", "Nakatomi", "Gekko")
_COMPANY_B = ("Corp", "GmbH", "Ltd", "Inc", "SA", "BV", "AB", "LLC", "Group", "Labs")
_PRODUCTS = ("Platform licence", "Analytics add-on", "Onboarding package", "Enterprise plan",
             "Support renewal", "Seat expansion", "Integration project")
_OWNERS = ("Maria Lopez", "Tom Becker", "Aisha Bello", "Ken Watanabe", "Julia Novak", "Sam Carter")
_REG_CHANNELS = (("web", 55), ("mobile_app", 15), ("social", 10), ("event", 5), ("email", 10),
                 ("partner", 5))
_WEB_PAGES = ("/", "/products", "/products/{n}", "/pricing", "/blog/{n}", "/search?q=shoes",
              "/about", "/cart", "/help", "/sale")
_NEWSLETTERS = ("weekly-digest", "spring-sale", "new-arrivals", "product-update", "webinar-invite",
                "loyalty-offer")
_TICKET_TOPICS = ("delivery", "billing", "product_question", "returns", "account", "bug",
                  "installation")
_RESOLUTIONS = ("answered", "replaced", "refunded", "fixed", "duplicate", "workaround")
_REFUND_REASONS = ("damaged", "not_as_described", "changed_mind", "late_delivery", "wrong_size")
_LOST_REASONS = (("price", 30), ("competitor", 30), ("no_decision", 25), ("timing", 15))
_DEAL_STAGES = ("qualification", "needs_assessment", "proposal", "negotiation")
_COMMENTS = {
    "promoter": ("Love it!", "Great service, fast delivery.", "Would recommend to friends.",
                 "Excellent quality."),
    "passive": ("It was fine.", "Good, but shipping was slow.", "Decent value.", "OK overall."),
    "detractor": ("Item arrived damaged.", "Support never answered.", "Too expensive.",
                  "Not what I expected.", "Très déçu du produit."),
}


@dataclass(frozen=True, slots=True)
class SimulatedLine:
    """One emitted line and what the simulator knows about it (for tests and benchmarks)."""

    line: bytes
    malformed: str | None  # one of MALFORMED_KINDS, or None for a well-formed event
    late: bool  # arrives some days after its business time


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class _Clock:
    """Formats simulation seconds (since ``start`` 00:00 UTC) as RFC 3339 UTC strings."""

    def __init__(self, start: date, days: int) -> None:
        self.start = start
        self._days = [(start + timedelta(days=d)).isoformat() for d in range(days + 400)]

    def date_str(self, day: int) -> str:
        if 0 <= day < len(self._days):
            return self._days[day]
        return (self.start + timedelta(days=day)).isoformat()

    def time_str(self, t: int) -> str:
        day, rem = divmod(t, DAY)
        h, rem = divmod(rem, HOUR)
        m, s = divmod(rem, MINUTE)
        return f"{self.date_str(day)}T{h:02d}:{m:02d}:{s:02d}Z"


class _Population:
    """Generates the business events of a whole population (before arrival effects)."""

    def __init__(self, customers: int, seed: int, days: int) -> None:
        self.n = customers
        self.seed = seed
        self.end = days * DAY  # events strictly before start + days
        self.rng = random.Random(seed)
        # (time, seq, customer index, type, source, data)
        self.events: list[tuple[int, int, int, str, str, dict]] = []
        self.seq = 0
        self.last_t = [-1] * customers
        self.registered = [False] * customers
        self.deal_no = 0
        self.ticket_no = 0
        self.referrals: list[tuple[int, int, dict]] = []
        self.registration: dict[int, dict] = {}
        # Arrival (first event) of each customer: spread over the period, slowly growing.
        rng = self.rng
        arrivals = sorted(int(self.end * rng.random() ** 0.85) for _ in range(customers))
        self.arrivals = arrivals

    # -- primitives -------------------------------------------------------------------------

    def tod(self) -> int:
        """A random time of day in seconds, weighted towards daytime hours."""
        rng = self.rng
        h = rng.choices(_HOURS, cum_weights=_HOUR_CUM)[0]
        return h * HOUR + rng.randrange(HOUR)

    def later(self, t: int, gap_days: float) -> int:
        """A time ``gap_days`` after ``t`` at a plausible time of day; always after ``t``."""
        day = int(t // DAY + gap_days)
        if day <= t // DAY:
            return t + self.rng.randint(MINUTE, 3 * HOUR)
        return day * DAY + self.tod()

    def add(self, ci: int, t: int, typ: str, data: dict, source: str | None = None) -> bool:
        if t >= self.end or t < 0:
            return False
        self.events.append((t, self.seq, ci, typ, source or EVENT_TYPES[typ], data))
        self.seq += 1
        if t > self.last_t[ci]:
            self.last_t[ci] = t
        return True

    def interaction(self, ci: int, t: int, channel: str, kind: str, detail: str | None = None) -> bool:
        data = {"channel": channel, "kind": kind}
        if detail is not None:
            data["detail"] = detail
        return self.add(ci, t, "crm.interaction.recorded", data, _INTERACTION_SOURCE[channel])

    def session(self, ci: int, t: int, pages: int, purpose: str = "browse") -> int:
        """A web visit: a few page views minutes apart. Returns the time of the last one."""
        rng = self.rng
        for p in range(pages):
            if purpose == "buy" and p == pages - 1:
                kind, detail = "cart_view", "/cart"
            else:
                kind = rng.choices(("page_view", "product_view", "pricing_view", "search"),
                                   cum_weights=(50, 80, 90, 100))[0]
                detail = rng.choice(_WEB_PAGES).replace("{n}", str(rng.randint(1, 300)))
            self.interaction(ci, t, "web", kind, detail if rng.random() < 0.85 else None)
            t += rng.randint(20, 420)
        return t

    # -- one customer -------------------------------------------------------------------------

    def customer(self, ci: int) -> None:
        rng = self.rng
        num = 1000 + ci
        t0 = self.arrivals[ci]
        b2b = rng.random() < 0.15
        currency = "EUR" if rng.random() < 0.05 else "USD"
        engagement = rng.gammavariate(2.0, 0.5)  # mean 1: how active this person is online
        satisfaction = rng.choices(("promoter", "passive", "detractor"), cum_weights=(40, 72, 100))[0]

        t = self.session(ci, t0, 1 + int(rng.expovariate(0.5)))
        active_end = t0 + int(rng.expovariate(1.0) * 45 * DAY * (0.3 + engagement))
        first_buy: int | None = None
        bant_failed_at: int | None = None
        optout_all_at: int | None = None

        # Registration (most browsers never register).
        reg_t: int | None = None
        if rng.random() < (0.88 if b2b else 0.5):
            reg_t = t + MINUTE if rng.random() < 0.5 else self.later(t, rng.expovariate(1 / 4))
            if self.register(ci, num, reg_t, currency):
                self.registered[ci] = True
                if b2b and rng.random() < 0.9:
                    company = f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)}"
                    self.add(ci, reg_t + rng.randint(5 * MINUTE, 2 * DAY), "crm.profile.updated",
                             {"company": company}, "crm/sales")
            else:
                reg_t = None

        consent_t: int | None = None
        if reg_t is not None:
            if rng.random() < 0.7:
                consent_t = reg_t + rng.randint(1, 90)
                purpose = rng.choices(("marketing", "email", "all"), cum_weights=(50, 85, 100))[0]
                self.add(ci, consent_t, "crm.consent.changed", {"purpose": purpose, "granted": True})
                if rng.random() < 0.15:
                    self.add(ci, consent_t + 1, "crm.consent.changed",
                             {"purpose": rng.choice(("sms", "phone")), "granted": True})
            # A few withdraw consent later; "all" means opting out of every contact.
            u = rng.random()
            if u < 0.12:
                when = self.later(reg_t, rng.uniform(1, 200))
                purpose = "all" if u < 0.04 else rng.choice(("email", "sms", "marketing", "phone"))
                if self.add(ci, when, "crm.consent.changed", {"purpose": purpose, "granted": False}):
                    if purpose == "all":
                        optout_all_at = when

        # Qualification (BANT).
        qualified_at: int | None = None
        if reg_t is not None and (b2b or rng.random() < 0.3):
            qt = self.later(reg_t, rng.expovariate(1 / (6 if b2b else 10)))
            if b2b:
                self.interaction(ci, self.later(reg_t, rng.uniform(0, 3)), "call", "discovery_call",
                                 "Intro call with sales")
            passed = rng.random() < (0.75 if b2b else 0.85)
            if passed:
                bant = {"budget": True, "authority": True, "need": True, "timeline": True}
            else:
                flags = [True, True, True, True]
                for k in rng.sample(range(4), rng.randint(1, 3)):
                    flags[k] = False
                bant = dict(zip(("budget", "authority", "need", "timeline"), flags))
            if rng.random() < 0.8:
                bant["score"] = rng.randint(60, 100) if passed else rng.randint(0, 50)
            if self.add(ci, qt, "crm.lead.qualified", bant):
                if passed:
                    qualified_at = qt
                else:
                    bant_failed_at = qt

        # Purchasing behaviour.
        buys = False
        if optout_all_at is None or rng.random() < 0.3:
            if b2b:
                buys = reg_t is not None and rng.random() < 0.2
            elif reg_t is not None:
                buys = rng.random() < (0.3 if bant_failed_at is not None else 0.62)
            else:
                buys = rng.random() < 0.05
        base_cents = int(rng.lognormvariate(3.7, 0.6) * 100)  # typical basket ~ 40
        last_activity = t
        if buys:
            anchor = reg_t if reg_t is not None else t0
            first = self.later(anchor, rng.expovariate(1 / 12))
            last_activity = self.purchase_life(ci, first, currency, base_cents, satisfaction, engagement)
            first_buy = first

        # Sales pipeline for B2B-like customers that passed qualification.
        if b2b and qualified_at is not None:
            deal_end, won_at = self.deals(ci, qualified_at, currency)
            last_activity = max(last_activity, deal_end)
            if won_at is not None:
                first_buy = won_at if first_buy is None else min(first_buy, won_at)

        if optout_all_at is not None and first_buy is None:
            active_end = min(active_end, optout_all_at + rng.randint(0, 3 * DAY))
        active_end = max(active_end, last_activity)

        # Browsing sessions across the active period.
        s = self.later(t0, rng.expovariate(engagement / 18 + 0.004))
        while s < active_end:
            self.session(ci, s, 1 + int(rng.expovariate(0.45)))
            s = self.later(s, rng.expovariate(engagement / 18 + 0.004))

        # Newsletters for consenting customers: opens and clicks, on campaign days.
        if consent_t is not None:
            stop = active_end if optout_all_at is None else min(active_end, optout_all_at)
            campaign = (consent_t // DAY // 14 + 1) * 14 + 3
            p_open = min(0.7, 0.25 * engagement + 0.05)
            while campaign * DAY < stop:
                if rng.random() < p_open:
                    name = _NEWSLETTERS[(campaign // 14) % len(_NEWSLETTERS)]
                    ot = campaign * DAY + self.tod()
                    self.interaction(ci, ot, "email", "email_open", name)
                    if rng.random() < 0.3:
                        self.interaction(ci, ot + rng.randint(5, 600), "email", "email_click", name)
                campaign += 14

        # Other channels now and then.
        if reg_t is not None and rng.random() < 0.25:
            for _ in range(1 + int(rng.expovariate(1.0))):
                when = self.later(reg_t, rng.uniform(0, max(1.0, (active_end - reg_t) / DAY)))
                if when <= active_end:
                    channel, kind = rng.choice((("chat", "chat_session"), ("social", "social_like"),
                                                ("social", "social_share"), ("event", "webinar"),
                                                ("event", "trade_show"), ("other", "postal_mail")))
                    self.interaction(ci, when, channel, kind)

        if reg_t is not None:
            # Profile updates.
            if rng.random() < 0.3:
                for _ in range(1 + (rng.random() < 0.3)):
                    when = self.later(reg_t, rng.uniform(1, max(2.0, (active_end - reg_t) / DAY)))
                    self.profile_update(ci, num, when)
            # A support question before buying anything.
            if first_buy is None and rng.random() < 0.05:
                self.ticket(ci, self.later(reg_t, rng.uniform(0, 20)))
            # Explicit stage change requests from sales, some of which the rules will refuse.
            if rng.random() < 0.06:
                when = self.later(reg_t, rng.uniform(0, max(1.0, (active_end - reg_t) / DAY)))
                self.stage_request(ci, when, first_buy, bant_failed_at)

    def register(self, ci: int, num: int, t: int, currency: str) -> bool:
        rng = self.rng
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        data: dict = {}
        if rng.random() < 0.95:
            data["name"] = f"{first} {last}"
        data["email"] = f"{_ascii(first)}.{_ascii(last)}{num}@{rng.choice(_EMAIL_DOMAINS)}"
        if rng.random() < 0.45:
            data["phone"] = f"+1-555-01{num % 100:02d}"
        if rng.random() < 0.9:
            if currency == "EUR":
                data["country"] = rng.choice(_EURO_COUNTRIES)
            else:
                data["country"] = rng.choices([c for c, _ in _COUNTRIES],
                                              weights=[w for _, w in _COUNTRIES])[0]
        if rng.random() < 0.85:
            data["channel"] = rng.choices([c for c, _ in _REG_CHANNELS],
                                          weights=[w for _, w in _REG_CHANNELS])[0]
        source = "shop/checkout" if rng.random() < 0.7 else "marketing/automation"
        if self.add(ci, t, "crm.customer.registered", data, source):
            self.registration[ci] = data
            return True
        return False

    def profile_update(self, ci: int, num: int, t: int) -> None:
        rng = self.rng
        fields = rng.sample(("address", "phone", "email", "name", "country", "company"),
                            1 + (rng.random() < 0.3))
        data: dict = {}
        for f in fields:
            if f == "address":
                data[f] = f"{num % 200 + 1} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}"
            elif f == "phone":
                data[f] = f"+1-555-02{rng.randrange(100):02d}"
            elif f == "email":
                data[f] = f"{_ascii(rng.choice(_FIRST_NAMES))}{num}@{rng.choice(_EMAIL_DOMAINS)}"
            elif f == "name":
                data[f] = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            elif f == "country":
                data[f] = rng.choices([c for c, _ in _COUNTRIES], weights=[w for _, w in _COUNTRIES])[0]
            else:
                data[f] = f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)}"
        self.add(ci, t, "crm.profile.updated", data)

    def stage_request(self, ci: int, t: int, first_buy: int | None, failed_at: int | None) -> bool:
        """An explicit request from sales. Returns True when it asks to churn (a cancellation)."""
        rng = self.rng
        is_customer = first_buy is not None and first_buy < t
        if is_customer:
            choice = rng.choices(
                (("churned", "cancellation"), ("advocate", "manual_override"),
                 ("awareness", "manual_override")), cum_weights=(60, 85, 100))[0]
        elif failed_at is not None and failed_at < t:
            choice = ("engagement", "reopened")
        else:
            choice = rng.choices(
                (("qualified", "sales_review"), ("disqualified", "manual_override"),
                 ("disqualified", "spam"), ("engagement", "sales_review"),
                 ("advocate", "manual_override"), ("retained", "manual_override")),
                cum_weights=(35, 50, 60, 72, 90, 100))[0]
        data = {"to_stage": choice[0], "reason": choice[1]}
        if rng.random() < 0.4:
            data["note"] = rng.choice(("Requested by account manager", "Cleanup after CRM import",
                                       "Customer asked by phone", "See ticket history"))
        return self.add(ci, t, "crm.stage.change.requested", data) and choice[0] == "churned"

    def ticket(self, ci: int, t: int, topic: str | None = None) -> None:
        rng = self.rng
        self.ticket_no += 1
        tid = f"t-{self.ticket_no}"
        priority = rng.choices(("low", "normal", "high", "urgent"), cum_weights=(30, 75, 93, 100))[0]
        data = {"ticket_id": tid, "priority": priority}
        if topic is None and rng.random() < 0.85:
            topic = rng.choice(_TICKET_TOPICS)
        if topic is not None:
            data["topic"] = topic
        if not self.add(ci, t, "crm.ticket.opened", data):
            return
        if rng.random() < 0.92:
            hours = rng.expovariate(1 / {"low": 60, "normal": 30, "high": 8, "urgent": 3}[priority])
            rt = t + int(hours * HOUR) + rng.randint(MINUTE, 30 * MINUTE)
            res: dict = {"ticket_id": tid}
            if rng.random() < 0.8:
                res["resolution"] = rng.choice(_RESOLUTIONS)
            if rng.random() < 0.7:
                res["satisfied"] = rng.random() < 0.8
            self.add(ci, rt, "crm.ticket.resolved", res)

    def feedback(self, ci: int, t: int, satisfaction: str) -> int | None:
        rng = self.rng
        kind = satisfaction if rng.random() < 0.75 else rng.choice(("promoter", "passive", "detractor"))
        if kind == "promoter":
            score = rng.choice((9, 10))
        elif kind == "passive":
            score = rng.choice((7, 8))
        else:
            score = rng.choices(range(7), cum_weights=(4, 6, 9, 13, 18, 26, 36))[0]
        data: dict = {"score": score}
        if rng.random() < 0.3:
            data["comment"] = rng.choice(_COMMENTS[kind])
        return score if self.add(ci, t, "crm.feedback.submitted", data) else None

    def referral(self, ci: int, t: int) -> None:
        rng = self.rng
        data: dict = {"referred_key": ""}  # resolved once the whole population is known
        if rng.random() < 0.7:
            data["channel"] = rng.choice(("email", "link", "social", "in_person"))
        if self.add(ci, t, "crm.referral.made", data):
            self.referrals.append((t, ci, data))

    def purchase_life(self, ci: int, first: int, currency: str, base_cents: int,
                      satisfaction: str, engagement: float) -> int:
        """Repeat purchases on a Poisson clock until the customer drops out; some come back."""
        rng = self.rng
        order_no = 0
        last_survey = -10**9
        rate = rng.gammavariate(0.9, 1 / (0.9 * 40)) * (0.5 + engagement / 2)  # per day
        life = rng.expovariate(1 / 220) * DAY
        t = first
        last = first
        periods = 0
        while True:
            end_life = t + life
            while t < end_life and t < self.end:
                self.session(ci, max(0, t - rng.randint(2 * MINUTE, 40 * MINUTE)),
                             1 + int(rng.expovariate(0.6)), "buy")
                batch = [t]
                if rng.random() < 0.12:  # another order on the same calendar day
                    t2 = t + rng.randint(5 * MINUTE, 6 * HOUR)
                    if t2 // DAY == t // DAY:
                        batch.append(t2)
                for bt in batch:
                    order_no += 1
                    order_id = f"o-{order_no}"
                    items = 1 + int(rng.expovariate(1.3))
                    cents = max(99, int(items * base_cents * rng.lognormvariate(0, 0.3)))
                    if not self.add(ci, bt, "crm.purchase.recorded",
                                    {"order_id": order_id, "amount": _money(cents),
                                     "currency": currency, "items": items}):
                        continue
                    last = bt
                    if rng.random() < 0.05:
                        rt = self.later(bt, rng.expovariate(1 / 6) + 0.5)
                        refund = cents if rng.random() < 0.6 else rng.randint(1, cents)
                        rd = {"order_id": order_id, "amount": _money(refund), "currency": currency}
                        if rng.random() < 0.7:
                            rd["reason"] = rng.choice(_REFUND_REASONS)
                        self.add(ci, rt, "crm.refund.recorded", rd)
                    if rng.random() < 0.06:
                        self.ticket(ci, self.later(bt, rng.expovariate(1 / 4)))
                    if bt - last_survey > 30 * DAY and rng.random() < 0.35:
                        st = self.later(bt, rng.uniform(1, 10))
                        score = self.feedback(ci, st, satisfaction)
                        if score is not None:
                            last_survey = st
                            if score >= 9 and rng.random() < 0.3:
                                self.referral(ci, self.later(st, rng.uniform(0, 20)))
                    elif rng.random() < 0.004:
                        self.referral(ci, self.later(bt, rng.uniform(1, 30)))
                gap = rng.expovariate(rate) if rate > 0 else 10**6
                t = self.later(t, max(1.0, gap))
            periods += 1
            # Gone quiet. A share comes back after a long pause (reactivation).
            if periods >= 3 or rng.random() >= 0.22:
                return last
            t = self.later(last, rng.uniform(190, 420))
            life = rng.expovariate(1 / 120) * DAY

    def deals(self, ci: int, qualified_at: int, currency: str) -> tuple[int, int | None]:
        """The customer's deals. Returns the time of the last deal event and of the first win."""
        rng = self.rng
        t = self.later(qualified_at, rng.expovariate(1 / 10))
        last = qualified_at
        first_win: int | None = None
        for _ in range(3):
            if t >= self.end:
                break
            self.deal_no += 1
            deal_id = f"d-{self.deal_no}"
            amount_cents = max(500_00, int(rng.lognormvariate(9.4, 0.8) / 50) * 50 * 100)
            if rng.random() < 0.2:
                amount_cents += rng.randrange(100)
            close = t + int(rng.uniform(30, 120) * DAY)
            opened = {"deal_id": deal_id,
                      "name": f"{rng.choice(_COMPANY_A)} {rng.choice(_PRODUCTS)}",
                      "amount": _money(amount_cents), "currency": currency,
                      "expected_close": self._date(close), "stage": "initial_contact",
                      "owner": rng.choice(_OWNERS)}
            if not self.add(ci, t, "crm.deal.opened", opened):
                break
            last = t
            u = rng.random()
            outcome = "won" if u < 0.36 else ("lost" if u < 0.8 else "open")
            reach = 4 if outcome == "won" else rng.randint(0, 4)
            for stage in _DEAL_STAGES[:reach]:
                t = self.later(t, 1 + rng.expovariate(1 / 10))
                if rng.random() < 0.5:
                    kind = rng.choice(("demo_call", "sales_call", "demo_meeting", "onsite_visit"))
                    channel = "call" if kind.endswith("call") else "meeting"
                    self.interaction(ci, t - rng.randint(HOUR, 2 * DAY), channel, kind)
                sc: dict = {"deal_id": deal_id, "stage": stage}
                if stage in ("proposal", "negotiation") and rng.random() < 0.3:
                    amount_cents = max(500_00, int(amount_cents * rng.uniform(0.8, 1.15)) // 100 * 100)
                    sc["amount"] = _money(amount_cents)
                if rng.random() < 0.2:
                    close = max(close, t) + int(rng.uniform(7, 45) * DAY)
                    sc["expected_close"] = self._date(close)
                if not self.add(ci, t, "crm.deal.stage.changed", sc):
                    return last, first_win
                last = t
            if outcome == "open":
                return last, first_win  # stalls: stays open
            t = self.later(t, 1 + rng.expovariate(1 / 12))
            if outcome == "won":
                wd: dict = {"deal_id": deal_id}
                if rng.random() < 0.5:
                    wd["amount"] = _money(amount_cents)
                if not self.add(ci, t, "crm.deal.won", wd):
                    return last, first_win
                last = t
                if first_win is None:
                    first_win = t
                last = max(last, self.contract_orders(ci, t, amount_cents, currency))
                nxt = 0.45
            else:
                reason = rng.choices([r for r, _ in _LOST_REASONS],
                                     weights=[w for _, w in _LOST_REASONS])[0]
                if not self.add(ci, t, "crm.deal.lost", {"deal_id": deal_id, "reason": reason}):
                    return last, first_win
                last = t
                nxt = 0.25
            if rng.random() >= nxt:
                break
            t = self.later(t, rng.uniform(45, 240))
        return last, first_win

    def contract_orders(self, ci: int, won_at: int, amount_cents: int, currency: str) -> int:
        """Purchases that follow a won deal: the deal in one or a few orders, then some renewals."""
        rng = self.rng
        parts = rng.choice((1, 1, 1, 2, 3))
        t = self.later(won_at, rng.uniform(0, 10))
        last = won_at
        paid = 0
        for k in range(parts):
            cents = amount_cents - paid if k == parts - 1 else amount_cents // parts
            paid += cents
            order_id = f"o-{ci}-{self.deal_no}-{k + 1}"
            if not self.add(ci, t, "crm.purchase.recorded",
                            {"order_id": order_id, "amount": _money(cents), "currency": currency,
                             "items": rng.randint(1, 50)}):
                return last
            last = t
            t = self.later(t, rng.uniform(25, 35))
        return last

    def _date(self, t: int) -> str:
        return self._clock.date_str(t // DAY)

    # -- the whole population ---------------------------------------------------------------

    def run(self, clock: _Clock) -> None:
        self._clock = clock
        for ci in range(self.n):
            self.customer(ci)
        self.resolve_referrals()
        self.erasures()

    def resolve_referrals(self) -> None:
        """Point each referral at a friend: mostly someone who shows up soon after, or a stranger."""
        rng = self.rng
        arrivals = self.arrivals
        used: dict[int, bool] = {}
        external = 0
        for t, ci, data in self.referrals:
            u = rng.random()
            key = None
            if u < 0.65:
                lo = bisect_right(arrivals, t)
                hi = bisect_left(arrivals, t + 45 * DAY)
                for _ in range(4):
                    if lo >= hi:
                        break
                    j = rng.randrange(lo, hi)
                    if j != ci and j not in used:
                        used[j] = True
                        key = f"shop:{1000 + j}"
                        reg = self.registration.get(j)
                        if reg is not None:
                            reg["channel"] = "referral"
                        break
            elif u < 0.8 and self.n > 1:
                j = rng.randrange(self.n - 1)
                j = j + 1 if j >= ci else j
                key = f"shop:{1000 + j}"
            if key is None:
                external += 1
                key = f"shop:{1000 + self.n + external}"  # a friend who never shows up
            data["referred_key"] = key

    def erasures(self) -> None:
        """A very few registered customers ask to be forgotten, after their last event."""
        rng = self.rng
        k = round(0.002 * self.n)
        if k == 0 and self.n >= 100:
            k = 1
        eligible = [ci for ci in range(self.n)
                    if self.registered[ci] and 0 <= self.last_t[ci] < self.end - 2 * DAY]
        for ci in sorted(rng.sample(eligible, min(k, len(eligible)))):
            last = self.last_t[ci]
            t = min(self.end - 1, self.later(last, rng.uniform(1, 30)))
            data = {"reason": rng.choice(("customer_request", "gdpr_article_17"))} if rng.random() < 0.7 else {}
            self.add(ci, t, "crm.customer.erasure.requested", data)


def _dumps(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _envelope(eid: str, source: str, typ: str, subject: str, time: str, data: dict,
              dataversion: str | None = None) -> dict:
    env = {"specversion": "1.0", "id": eid, "source": source, "type": typ, "subject": subject,
           "time": time, "datacontenttype": "application/json"}
    if dataversion is not None:
        env["dataversion"] = dataversion
    env["data"] = data
    return env


def _malformed(kind: str, j: int, seed: int, near: dict, rng: random.Random) -> bytes:
    eid = f"sim-{seed}-m{j}"
    subject, time, source = near["subject"], near["time"], near["source"]
    if kind == "not_json":
        variant = j % 3
        if variant == 0:  # truncated in transit
            full = _dumps(_envelope(eid, source, near["type"], subject, time, near["data"]))
            return full[: max(10, len(full) // 2)]
        if variant == 1:  # something that is not an event at all
            return b"<html><body>502 Bad Gateway</body></html>"
        return f'{{"specversion": "1.0", "id": "{eid}", subject: {subject}}}'.encode()
    if kind == "missing_subject":
        env = _envelope(eid, source, near["type"], subject, time, near["data"])
        del env["subject"]
        return _dumps(env)
    if kind == "negative_amount":
        cents = rng.randint(100, 20_000)
        return _dumps(_envelope(eid, "shop/checkout", "crm.purchase.recorded", subject, time,
                                {"order_id": f"o-bad-{j}", "amount": "-" + _money(cents),
                                 "currency": "USD", "items": 1}))
    if kind == "nps_out_of_range":
        return _dumps(_envelope(eid, "survey/nps", "crm.feedback.submitted", subject, time,
                                {"score": 11}))
    unknown = rng.choice(("crm.wishlist.added", "crm.purchase.cancelled", "crm.customer.teleported",
                          "com.example.page.liked"))
    return _dumps(_envelope(eid, source, unknown, subject, time, {"note": "unmapped upstream type"}))


def simulate_annotated(customers: int = 2000, seed: int = 7, start: date = date(2024, 1, 1),
                       days: int = 730, late_fraction: float = 0.02,
                       malformed_fraction: float = 0.002) -> list[SimulatedLine]:
    """Like :func:`simulate`, but each line comes with whether it is malformed or late."""
    if customers < 0 or days <= 0:
        raise ValueError("customers must be >= 0 and days > 0")
    if not 0.0 <= late_fraction <= 1.0 or not 0.0 <= malformed_fraction < 1.0:
        raise ValueError("late_fraction must be in [0, 1] and malformed_fraction in [0, 1)")
    clock = _Clock(start, days)
    pop = _Population(customers, seed, days)
    pop.run(clock)
    events = pop.events
    events.sort(key=lambda e: (e[0], e[1]))

    # Business-time order: envelopes with ids in that order.
    post = random.Random(seed * 7919 + 1)
    feedback_idx = [i for i, e in enumerate(events) if e[3] == "crm.feedback.submitted"]
    old_version = set()
    if feedback_idx:
        k = max(1, round(0.03 * len(feedback_idx)))
        old_version = set(post.sample(feedback_idx, k))
    envelopes: list[dict] = []
    for n, (t, _seq, ci, typ, source, data) in enumerate(events):
        dv = None
        if n in old_version:
            data, dv = {"nps": data["score"]}, "1"
        envelopes.append(_envelope(f"sim-{seed}-{n + 1}", source, typ, f"shop:{1000 + ci}",
                                   clock.time_str(t), data, dv))

    # Arrival order: a few events are delivered days late.
    late_rng = random.Random(seed * 7919 + 2)
    n = len(events)
    late = set(late_rng.sample(range(n), round(n * late_fraction))) if n else set()
    arrival = []
    for i, e in enumerate(events):
        delay = 0
        if i in late:
            delay = int((1 + late_rng.expovariate(1 / 3)) * DAY) + late_rng.randrange(DAY)
        arrival.append((e[0] + delay, i))
    arrival.sort()

    out = [SimulatedLine(_dumps(envelopes[i]), None, i in late) for _, i in arrival]

    # Malformed lines mixed in at random places.
    bad_rng = random.Random(seed * 7919 + 3)
    m = round(n * malformed_fraction / (1 - malformed_fraction)) if n else 0
    if m:
        inserts = sorted((bad_rng.randrange(n + 1), j) for j in range(m))
        merged: list[SimulatedLine] = []
        pos = 0
        for at, j in inserts:
            merged.extend(out[pos:at])
            pos = at
            near = envelopes[arrival[min(at, n - 1)][1]]
            kind = MALFORMED_KINDS[j % len(MALFORMED_KINDS)]
            merged.append(SimulatedLine(_malformed(kind, j + 1, seed, near, bad_rng), kind, False))
        merged.extend(out[pos:])
        out = merged
    return out


def simulate(customers: int = 2000, seed: int = 7, start: date = date(2024, 1, 1), days: int = 730,
             late_fraction: float = 0.02, malformed_fraction: float = 0.002) -> list[bytes]:
    """Simulate a customer population; return its CloudEvents JSON lines in arrival order.

    Each line is one UTF-8 JSON object without a trailing newline. Lines are sorted by
    business time, except ``late_fraction`` of the events, which arrive some days late, and
    about ``malformed_fraction`` of the lines, which are malformed (not JSON, no subject, a
    negative amount, an NPS of 11, an unknown type). The same arguments give the same bytes.
    """
    return [s.line for s in simulate_annotated(customers, seed, start, days, late_fraction,
                                               malformed_fraction)]


def simulate_iter(customers: int = 2000, seed: int = 7, start: date = date(2024, 1, 1),
                  days: int = 730, late_fraction: float = 0.02,
                  malformed_fraction: float = 0.002) -> Iterator[bytes]:
    """The lines of :func:`simulate`, one at a time (the population is generated up front)."""
    yield from simulate(customers, seed, start, days, late_fraction, malformed_fraction)


def purchases_only(customers: int = 200, seed: int = 7, start: date = date(2024, 1, 1),
                   days: int = 365) -> list[bytes]:
    """Only ``crm.purchase.recorded`` events, sorted by business time, for RFM tests.

    Every customer buys at least once; most several times on different days; some buy more
    than once on the same calendar day (UTC). Amounts have cents; the currency is USD.
    """
    if customers < 0 or days <= 0:
        raise ValueError("customers must be >= 0 and days > 0")
    rng = random.Random(seed * 7919 + 11)
    clock = _Clock(start, days)
    end = days * DAY
    rows: list[tuple[int, int, int, dict]] = []
    seq = 0

    def tod() -> int:
        return rng.choices(_HOURS, cum_weights=_HOUR_CUM)[0] * HOUR + rng.randrange(HOUR)

    for ci in range(customers):
        base = rng.lognormvariate(3.6, 0.7)
        day = rng.randrange(max(1, int(days * 0.9)))
        purchase_days = 1 + min(11, int(rng.expovariate(0.35)))
        mean_gap = rng.uniform(5, 60)
        order_no = 0
        for _ in range(purchase_days):
            if day >= days:
                break
            orders = 1 if rng.random() < 0.8 else rng.randint(2, 3)
            times = sorted(day * DAY + tod() for _ in range(orders))
            for t in times:
                order_no += 1
                items = 1 + int(rng.expovariate(1.2))
                cents = max(50, int(items * base * rng.lognormvariate(0, 0.4) * 100))
                rows.append((t, seq, ci, {"order_id": f"o-{order_no}", "amount": _money(cents),
                                          "currency": "USD", "items": items}))
                seq += 1
            day += 1 + int(rng.expovariate(1 / mean_gap))
    rows = [r for r in rows if r[0] < end]
    rows.sort(key=lambda r: (r[0], r[1]))
    return [_dumps(_envelope(f"sim-{seed}-p{n + 1}", "shop/checkout", "crm.purchase.recorded",
                             f"shop:{1000 + ci}", clock.time_str(t), data))
            for n, (t, _s, ci, data) in enumerate(rows)]
