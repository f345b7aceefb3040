"""Notifier adapters: a generic JSON webhook, e-mail over SMTP, and the log (safe default)."""
