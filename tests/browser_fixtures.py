"""Fixtures that serve the app and drive headless Chromium (filled in by the app-shell work)."""
