"""Who may use which (account, role) now: ``resolve`` (the memoised resolver), ``scope`` (the
business-unit scope rule), ``review`` (the access review), and the portal and review pages."""
