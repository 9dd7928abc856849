"""Runs on several hosts: the Celery workers, the run launcher and their settings (``workers``)."""
