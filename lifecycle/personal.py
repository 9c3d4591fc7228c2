"""Which facts carry personal data, field by field.

These fields are stored encrypted with a key per customer (crypto-shredding):
destroying the key erases them from every copy at once, while stages,
amounts and counts, which are not personal, stay readable.
"""

from __future__ import annotations

PERSONAL_FIELDS: dict[str, frozenset[str]] = {
    "registered": frozenset({"name", "email", "phone"}),
    "profile_updated": frozenset({"name", "email", "phone", "address", "company"}),
    "interaction": frozenset({"detail"}),
    "qualification": frozenset({"note"}),
    "stage_requested": frozenset({"note"}),
    "feedback": frozenset({"comment"}),
    "refund": frozenset({"reason"}),
    "ticket_opened": frozenset({"topic"}),
    "ticket_resolved": frozenset({"resolution"}),
    "erasure_requested": frozenset({"reason"}),
}
