"""Services of the request workflow: every state change of requests and grants."""
