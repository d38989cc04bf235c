"""The control loop (SPEC §4): the IAM roles the mapping tables call for, planned, applied in
waves and watched for drift. See docs/control-loop.md."""
