"""The hospital edge: intake (files, the Python client) and what goes back out (the webhook)."""
