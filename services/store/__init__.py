"""The console's own database (SQLAlchemy 2): local endpoints, approvals, audit trail."""
