"""Helpers for tests/test_browser.py: a JupyterLab server on a free localhost port, and a
headless Chromium (Debian's, driven by Playwright) that uses it the way a person does."""
