from __future__ import annotations

from django.apps import AppConfig


class SkiplockConfig(AppConfig):
    name = "skiplock.contrib.django"
    label = "skiplock"
    verbose_name = "skiplock job queue"
    default_auto_field = "django.db.models.BigAutoField"
