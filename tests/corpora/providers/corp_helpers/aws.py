"""boto3 objects built at parse time, as many Amazon DAGs do; static credentials so nothing is looked up."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

REGION = "eu-west-1"
RETRY_CONFIG = Config(region_name=REGION, retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=5)


def session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="corpus", aws_secret_access_key="corpus", region_name=REGION)


def client(service: str) -> Any:
    """A client object only: creating one reads botocore's local service models and makes no request."""
    return session().client(service, config=RETRY_CONFIG)


def bucket_name(env: str, purpose: str) -> str:
    return f"corpus-{env}-{purpose}"[:63]
