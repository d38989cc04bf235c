"""Issuing AWS role sessions: ``service`` (issue_session), ``tokens`` (personal API tokens), the
portal's ``views`` and the JSON ``api`` under /api/v1/."""
