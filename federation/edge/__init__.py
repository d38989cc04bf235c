"""The HTTP edge in front of every view: who the client is behind a trusted proxy (proxy.py) and
how fast it may call the costly endpoints (limits.py, ratelimit.py)."""
