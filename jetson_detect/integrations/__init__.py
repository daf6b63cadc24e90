"""Integrations that observe the app (events, stats) without the loop ever waiting for them: MQTT, the web app and
its JSON API, Prometheus metrics."""
