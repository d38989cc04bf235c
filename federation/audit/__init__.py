"""The tamper-evident audit log: ``chain`` is the one writer and verifier, ``views`` the pages."""
