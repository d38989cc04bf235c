"""Step-up: fresh multi-factor sign-in before a require_mfa role is issued (SPEC §4)."""
