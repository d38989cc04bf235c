"""``fedaccess login`` through the browser: device-authorization style sign-in for the CLI."""
