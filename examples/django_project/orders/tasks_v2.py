"""Orders, release 2: fulfilling an order needs a quantity too (a breaking change)."""

import os
import time

from celery import shared_task


@shared_task(name="orders.fulfil")
def fulfil(item: str, quantity: int) -> str:
    time.sleep(float(os.environ.get("ORDERS_WAREHOUSE_SECONDS", "0.1")))
    return f"{quantity} x {item} shipped"
