"""Orders, release 1: fulfilling an order takes its item."""

import os
import time

from celery import shared_task


@shared_task(name="orders.fulfil")
def fulfil(item: str) -> str:
    time.sleep(float(os.environ.get("ORDERS_WAREHOUSE_SECONDS", "0.1")))  # the warehouse API's answer
    return f"{item} shipped"
