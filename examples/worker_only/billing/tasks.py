"""Billing, release 1: a charge is a customer and an amount in cents."""

import os
import time

from billing.celery import app


@app.task(name="billing.charge")
def charge(customer: str, cents: int) -> str:
    time.sleep(float(os.environ.get("BILLING_GATEWAY_SECONDS", "0.1")))  # the payment gateway's answer
    send_receipt.delay(customer, cents)
    return f"charged {customer} {cents}"


@app.task(name="billing.send_receipt")
def send_receipt(customer: str, cents: int) -> str:
    return f"receipt for {cents} sent to {customer}"
