"""Label audit (``prodcat audit``): confident learning with cleanlab on out-of-fold probabilities,
near-duplicate listings with conflicting labels, the most confused category pairs, and label
quality per category; suspects can go to the review queue."""

from prodcat.audit.core import AuditResult, conflicting_duplicates, rank_label_issues, run_audit
from prodcat.audit.report import audit_html, queue_suspects, write_audit

__all__ = ["AuditResult", "audit_html", "conflicting_duplicates", "queue_suspects", "rank_label_issues",
           "run_audit", "write_audit"]
