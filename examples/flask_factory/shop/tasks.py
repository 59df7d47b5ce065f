"""The shop's tasks, version 1: the welcome email takes the address only."""

from __future__ import annotations

import os
import time

from celery import shared_task


@shared_task(name="shop.send_welcome_email")
def send_welcome_email(email: str) -> str:
    time.sleep(float(os.environ.get("SHOP_SMTP_SECONDS", "0.1")))  # the mail server's answer
    return f"welcome sent to {email}"
