"""S3 through boto3, for what DVC does not do itself: making sure the remote's bucket exists.

Endpoint and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``),
so any S3-compatible endpoint works.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def endpoint_url() -> str | None:
    """The S3 endpoint from the environment, or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.lstrip("/")


def client():
    """A boto3 S3 client on the configured endpoint."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url())


def ensure_bucket(url: str) -> bool:
    """Create the bucket of ``url`` if it does not exist; True when it was created."""
    from botocore.exceptions import ClientError

    bucket, _ = split_url(url)
    s3 = client()
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **kwargs)
    log.info("created bucket %s for the DVC remote", bucket)
    return True
