"""The application: the live detection pipeline and what hooks into it."""
