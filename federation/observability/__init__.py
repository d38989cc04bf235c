"""Metrics (/metrics), structured logs and the request id (issue 18 items 3 and 4)."""
