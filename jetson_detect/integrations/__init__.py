"""Integrations that observe the app (events, stats) without the loop ever waiting for them: MQTT and the web app."""
