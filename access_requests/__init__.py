"""Time-bound privileged access: requests, approvals and the grants they make (SPEC §4)."""
