"""The views analysts read, and the projections' own bookkeeping, as table definitions.

Per-entity tables are re-derived one customer or deal at a time; the summary
tables (funnel, forecast, cohorts, NPS, RFM) are pure functions of those and
are recomputed whole, so they can never double-count.
"""

from __future__ import annotations

from projections.store.tables import Column, Table


def _c(name: str, type_: str, description: str, nullable: bool = True) -> Column:
    return Column(name, type_, description, nullable)  # type: ignore[arg-type]


_CUSTOMER = (
    _c("customer_id", "text", "Engine id of the customer (derived from the key)", False),
    _c("customer_key", "text", "Upstream key of the customer (CloudEvents subject)", False),
)

CUSTOMER_CURRENT = Table(
    "customer_current",
    _CUSTOMER + (
        _c("stage", "text", "Lifecycle stage now, derived in business-time order", False),
        _c("stage_since", "timestamp", "Business time the current stage was entered", False),
        _c("first_seen_at", "timestamp", "Business time of the first event", False),
        _c("last_activity_at", "timestamp", "Business time of the last customer activity", False),
        _c("name", "text", "Full name (personal data)"),
        _c("email", "text", "Email address (personal data)"),
        _c("phone", "text", "Phone number (personal data)"),
        _c("address", "text", "Postal address (personal data)"),
        _c("company", "text", "Company name"),
        _c("country", "text", "ISO 3166-1 alpha-2 country"),
        _c("consent", "json", "Consent per purpose: {purpose: granted}"),
        _c("bant_passed", "bool", "Outcome of the last BANT qualification"),
        _c("interactions", "int", "Interactions recorded", False),
        _c("orders", "int", "Distinct orders purchased", False),
        _c("purchase_days", "int", "Distinct UTC calendar days with a purchase", False),
        _c("first_purchase_at", "timestamp", "Business time of the first purchase"),
        _c("last_purchase_at", "timestamp", "Business time of the last purchase"),
        _c("currency", "text", "ISO 4217 currency of the first purchase; money columns are in it"),
        _c("total_spent", "decimal", "Sum of purchases in `currency`", False),
        _c("total_refunded", "decimal", "Sum of refunds of those purchases", False),
        _c("net_spent", "decimal", "total_spent - total_refunded", False),
        _c("last_nps", "int", "Last NPS score given (0-10)"),
        _c("feedback_count", "int", "NPS responses given", False),
        _c("referrals_made", "int", "Referrals made", False),
        _c("open_tickets", "int", "Support tickets opened and not resolved", False),
        _c("erasure_requested", "bool", "Erasure of personal data was requested", False),
        _c("erased", "bool", "Personal data was erased (crypto-shredded)", False),
        _c("updated_at", "timestamp", "Recorded time of the newest event used", False),
    ),
    key=("customer_id",),
    entity="customer_id",
    description="One row per customer: current lifecycle stage and totals, on business time.",
)

STAGE_HISTORY = Table(
    "stage_history",
    _CUSTOMER + (
        _c("seq", "int", "Order of the stage in this customer's history, from 0", False),
        _c("stage", "text", "Stage entered", False),
        _c("from_stage", "text", "Stage left (null for the first)"),
        _c("entered_at", "timestamp", "Business time the stage was entered", False),
        _c("exited_at", "timestamp", "Business time the stage was left (null: current)"),
        _c("seconds_in_stage", "int", "exited_at - entered_at in seconds (null: current)"),
        _c("reason", "text", "Reason code of the transition", False),
        _c("trigger", "text", "derived (from behaviour), requested (upstream) or sweep", False),
    ),
    key=("customer_id", "seq"),
    entity="customer_id",
    description="Every stage each customer went through, with entry, exit and time in stage.",
)

CUSTOMER_PURCHASES = Table(
    "customer_purchases",
    _CUSTOMER + (
        _c("order_id", "text", "Upstream order id (counts once)", False),
        _c("occurred_at", "timestamp", "Business time of the purchase", False),
        _c("purchase_date", "date", "UTC calendar day of the purchase", False),
        _c("amount", "decimal", "Amount paid", False),
        _c("currency", "text", "ISO 4217 currency", False),
        _c("items", "int", "Items in the order", False),
        _c("refunded", "decimal", "Amount refunded so far", False),
    ),
    key=("customer_id", "order_id"),
    entity="customer_id",
    description="One row per order; the base of RFM and retention cohorts.",
)

CUSTOMER_FEEDBACK = Table(
    "customer_feedback",
    _CUSTOMER + (
        _c("seq", "int", "Order of the response for this customer", False),
        _c("occurred_at", "timestamp", "Business time of the response", False),
        _c("score", "int", "NPS score 0-10", False),
        _c("category", "text", "promoter (9-10), passive (7-8) or detractor (0-6)", False),
    ),
    key=("customer_id", "seq"),
    entity="customer_id",
    description="Every NPS response.",
)

CUSTOMER_REFERRALS = Table(
    "customer_referrals",
    _CUSTOMER + (
        _c("seq", "int", "Order of the referral for this customer", False),
        _c("occurred_at", "timestamp", "Business time of the referral", False),
        _c("referred_key", "text", "Key of the customer referred", False),
    ),
    key=("customer_id", "seq"),
    entity="customer_id",
    description="Every referral made.",
)

_DEAL = (
    _c("deal_id", "text", "Upstream deal id", False),
    _c("customer_key", "text", "Upstream key of the deal's customer", False),
)

DEAL_CURRENT = Table(
    "deal_current",
    _DEAL + (
        _c("customer_id", "text", "Engine id of the customer", False),
        _c("name", "text", "Deal name"),
        _c("owner", "text", "Sales owner"),
        _c("stage", "text", "Pipeline stage now", False),
        _c("probability", "decimal", "Win probability of the stage (0-1)", False),
        _c("forecast_category", "text", "pipeline, best_case, commit, closed or omitted", False),
        _c("amount", "decimal", "Deal amount"),
        _c("weighted_amount", "decimal", "amount x probability"),
        _c("currency", "text", "ISO 4217 currency"),
        _c("expected_close", "date", "Expected close date"),
        _c("opened_at", "timestamp", "Business time the deal opened", False),
        _c("closed_at", "timestamp", "Business time the deal was won or lost"),
        _c("outcome", "text", "open, won or lost", False),
        _c("lost_reason", "text", "Why the deal was lost"),
        _c("updated_at", "timestamp", "Recorded time of the newest event used", False),
    ),
    key=("deal_id",),
    entity="deal_id",
    description="One row per deal in the sales pipeline.",
)

DEAL_STAGE_HISTORY = Table(
    "deal_stage_history",
    _DEAL + (
        _c("seq", "int", "Order of the stage in the deal's history", False),
        _c("stage", "text", "Pipeline stage entered", False),
        _c("entered_at", "timestamp", "Business time the stage was entered", False),
        _c("exited_at", "timestamp", "Business time the stage was left (null: current)"),
        _c("amount", "decimal", "Amount when the stage was entered"),
        _c("currency", "text", "ISO 4217 currency"),
        _c("expected_close", "date", "Expected close date when the stage was entered"),
    ),
    key=("deal_id", "seq"),
    entity="deal_id",
    description="Every pipeline stage each deal went through.",
)

REJECTIONS = Table(
    "rejections",
    (
        _c("rejection_id", "text", "Engine id of the receipt", False),
        _c("outcome", "text", "malformed (failed the contract) or refused (a rule said no)", False),
        _c("reason", "text", "Why, in one line", False),
        _c("source", "text", "CloudEvents source, if readable"),
        _c("event_id", "text", "CloudEvents id, if readable"),
        _c("type", "text", "CloudEvents type, if readable"),
        _c("subject", "text", "Customer key, if readable"),
        _c("occurred_at", "timestamp", "Business time, if readable"),
        _c("recorded_at", "timestamp", "When the engine recorded the rejection", False),
        _c("raw", "text", "The original bytes as text (invalid UTF-8 replaced; empty once erased)", False),
        _c("raw_base64", "text", "The original bytes, exactly, base64 (empty once erased)", False),
    ),
    key=("rejection_id",),
    entity="subject",
    description="Every inbound event that was refused or malformed, with its original bytes.",
)

PIPELINE_FUNNEL = Table(
    "pipeline_funnel",
    (
        _c("funnel", "text", "lifecycle (customer stages) or deals (sales pipeline)", False),
        _c("position", "int", "Order of the stage in the funnel", False),
        _c("stage", "text", "Stage", False),
        _c("reached", "int", "Entities that reached this stage or a later one", False),
        _c("converted_to_next", "int", "Of those, how many reached the next stage", False),
        _c("conversion_rate", "decimal", "converted_to_next / reached"),
        _c("as_of", "date", "Date the figures are computed for", False),
    ),
    key=("funnel", "position"),
    description="Funnel per stage: reached, converted to the next stage, conversion rate.",
)

DEAL_FORECAST = Table(
    "deal_forecast",
    (
        _c("close_month", "text", "Expected (or actual) close month, YYYY-MM", False),
        _c("forecast_category", "text", "pipeline, best_case, commit, closed or omitted", False),
        _c("currency", "text", "ISO 4217 currency", False),
        _c("deals", "int", "Deals", False),
        _c("amount", "decimal", "Sum of amounts", False),
        _c("weighted_amount", "decimal", "Sum of amount x stage probability", False),
        _c("win_rate", "decimal", "Won / (won + lost) of the deals closing that month"),
        _c("as_of", "date", "Date the figures are computed for", False),
    ),
    key=("close_month", "forecast_category", "currency"),
    description="Deal forecast by close month and forecast category, weighted by stage probability.",
)

RETENTION_COHORTS = Table(
    "retention_cohorts",
    (
        _c("cohort_month", "text", "Month of the first purchase, YYYY-MM", False),
        _c("months_since", "int", "Months after the cohort month", False),
        _c("cohort_size", "int", "Customers whose first purchase was in the cohort month", False),
        _c("active_customers", "int", "Of those, how many purchased in that month", False),
        _c("retention_rate", "decimal", "active_customers / cohort_size", False),
        _c("as_of", "date", "Date the figures are computed for", False),
    ),
    key=("cohort_month", "months_since"),
    description="First-purchase month x months since: share of the cohort still purchasing.",
)

ADVOCACY_NPS = Table(
    "advocacy_nps",
    (
        _c("month", "text", "Month, YYYY-MM", False),
        _c("responses", "int", "NPS responses", False),
        _c("promoters", "int", "Scores 9-10", False),
        _c("passives", "int", "Scores 7-8", False),
        _c("detractors", "int", "Scores 0-6", False),
        _c("nps", "decimal", "(promoters - detractors) / responses x 100"),
        _c("referrals", "int", "Referrals made", False),
        _c("new_advocates", "int", "Customers who became advocates", False),
        _c("as_of", "date", "Date the figures are computed for", False),
    ),
    key=("month",),
    description="NPS, referrals and new advocates by month.",
)

CUSTOMER_RFM = Table(
    "customer_rfm",
    _CUSTOMER + (
        _c("first_purchase_date", "date", "First purchase day (UTC)", False),
        _c("frequency", "int", "Purchase days after the first one", False),
        _c("recency_days", "int", "Last purchase day - first purchase day", False),
        _c("age_days", "int", "as_of - first purchase day (T)", False),
        _c("days_since_last", "int", "as_of - last purchase day", False),
        _c("monetary", "decimal", "Mean spend of the repeat purchase days (0 when none)", False),
        _c("currency", "text", "Currency of monetary", False),
        _c("r_score", "int", "Recency quintile 1-5 (5 = most recent)", False),
        _c("f_score", "int", "Frequency quintile 1-5", False),
        _c("m_score", "int", "Monetary quintile 1-5", False),
        _c("segment", "text", "Named RFM segment", False),
        _c("as_of", "date", "Date the figures are computed for", False),
    ),
    key=("customer_id",),
    description="RFM per customer, customer-base-analysis convention (same-day purchases count once).",
)

CUSTOMER_FOLDS = Table(
    "customer_folds",
    (
        _c("customer_id", "text", "Engine id of the customer", False),
        _c("facts", "int", "Facts folded, in business-time order", False),
        _c("last_occurred_at", "timestamp", "Business time of the last fact folded", False),
        _c("last_tiebreak", "json", "The rest of that fact's sort key: [rank, source, inbound id]", False),
        _c("recorded_at", "timestamp", "Latest recorded time among the facts folded", False),
        _c("derivation", "text", "Fingerprint of the stage model and the code that folded", False),
        _c("state", "json", "The fold (personal fields sealed, as stored)", False),
    ),
    key=("customer_id", "facts"),
    entity="customer_id",
    description="Kept folds of long customer histories: a point-in-time answer starts from one.",
    internal=True,
)

ENTITY_TABLES = (
    CUSTOMER_CURRENT, STAGE_HISTORY, CUSTOMER_PURCHASES, CUSTOMER_FEEDBACK, CUSTOMER_REFERRALS,
    DEAL_CURRENT, DEAL_STAGE_HISTORY,
)
SUMMARY_TABLES = (PIPELINE_FUNNEL, DEAL_FORECAST, RETENTION_COHORTS, ADVOCACY_NPS, CUSTOMER_RFM)
ALL_TABLES = ENTITY_TABLES + (REJECTIONS,) + SUMMARY_TABLES + (CUSTOMER_FOLDS,)
