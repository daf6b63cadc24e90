"""What other systems see of the watch: the web app and its JSON API, Prometheus metrics, MQTT."""
