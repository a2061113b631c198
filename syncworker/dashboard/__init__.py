"""The dashboard: the place to look and act (the admin stays the place to configure)."""
