"""Adapters to AWS that decide nothing: ``sts`` (every STS call, console links) and ``iam``."""
