"""The shop's tasks, version 2: the welcome email now requires a language (a breaking change)."""

from __future__ import annotations

import os
import time

from celery import shared_task


@shared_task(name="shop.send_welcome_email")
def send_welcome_email(email: str, language: str) -> str:
    time.sleep(float(os.environ.get("SHOP_SMTP_SECONDS", "0.1")))
    return f"welcome ({language}) sent to {email}"
