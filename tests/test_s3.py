"""The DVC remote's bucket on a real S3 endpoint (moto server on 127.0.0.1)."""

from __future__ import annotations

import pytest

from infra import s3
from servers import moto_s3  # noqa: F401


def test_missing_bucket_is_created_once(moto_s3, monkeypatch):
    for key, value in moto_s3.items():
        monkeypatch.setenv(key, value)
    url = "s3://r1flow-new-bucket/dvc"
    assert s3.ensure_bucket(url) is True
    assert s3.ensure_bucket(url) is False
    names = {b["Name"] for b in moto_s3.client().list_buckets()["Buckets"]}
    assert "r1flow-new-bucket" in names


def test_bad_url_is_refused():
    with pytest.raises(ValueError, match="not an s3://bucket/prefix URL"):
        s3.split_url("/local/path")
