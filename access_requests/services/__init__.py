"""Every state change of requests and grants, one module per concern: ``workflow`` (submit,
decide, cancel), ``grants`` (revoke, expire, lost eligibility), ``locked`` (the lock-and-refuse
sequence they share) and ``effects`` (what is queued after commit). Import the module you need;
nothing is re-exported here."""
