"""Readiness probe and smoke check of the test S3 server, with the real boto3 client.

Run by scripts/services.sh with the venv's python; reads MAAS_TEST_S3_ENDPOINT,
MAAS_TEST_S3_ACCESS_KEY, MAAS_TEST_S3_SECRET_KEY, MAAS_TEST_S3_REGION, MAAS_TEST_S3_BUCKET.

  check_s3.py --wait SECONDS   retry until a signed write works, creating the bucket if missing
  check_s3.py --check          multipart upload (12 MiB in 5 MiB parts), ranged and whole
                               GET, list, delete, and a request with a wrong secret refused
Both may be given; --wait runs first. Exit status 0 when everything passed.
"""

import argparse
import hashlib
import os
import sys
import time
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MIB = 1024 * 1024


def client(secret=None):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["MAAS_TEST_S3_ENDPOINT"],
        aws_access_key_id=os.environ["MAAS_TEST_S3_ACCESS_KEY"],
        aws_secret_access_key=secret or os.environ["MAAS_TEST_S3_SECRET_KEY"],
        region_name=os.environ.get("MAAS_TEST_S3_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=10,
            retries={"max_attempts": 1},
        ),
    )


def ensure_bucket(s3, bucket):
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as e2:
            if e2.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise


def wait_ready(s3, bucket, seconds):
    """Ready means: the bucket exists and an object can be written and deleted (volumes
    assigned, master elected), not merely that the port answers."""
    deadline = time.monotonic() + seconds
    key = f".maas-ready/{uuid.uuid4().hex}"
    while True:
        try:
            ensure_bucket(s3, bucket)
            s3.put_object(Bucket=bucket, Key=key, Body=b"ok")
            s3.delete_object(Bucket=bucket, Key=key)
            return
        except (BotoCoreError, ClientError) as e:
            if time.monotonic() >= deadline:
                raise SystemExit(f"S3 not ready after {seconds} s: {e}")
            time.sleep(0.3)


def check(s3, bucket):
    t0 = time.monotonic()
    prefix = f"check-s3/{uuid.uuid4().hex}/"
    key = prefix + "blob.bin"
    data = os.urandom(12 * MIB)
    part_size = 5 * MIB

    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/octet-stream")
    parts = []
    try:
        for n, off in enumerate(range(0, len(data), part_size), start=1):
            r = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=n,
                Body=data[off:off + part_size],
            )
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )
    except Exception:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        raise
    assert len(parts) == 3, parts
    assert done["ETag"].strip('"').endswith("-3"), f"multipart ETag {done['ETag']}"

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data), head["ContentLength"]

    # A range across the boundary between part 1 and part 2.
    lo, hi = part_size - 10, part_size + 19
    r = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={lo}-{hi}")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206, r["ResponseMetadata"]["HTTPStatusCode"]
    assert r["ContentRange"] == f"bytes {lo}-{hi}/{len(data)}", r["ContentRange"]
    assert r["Body"].read() == data[lo:hi + 1], "ranged GET returned wrong bytes"

    whole = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(whole).digest() == hashlib.sha256(data).digest(), "whole GET differs"

    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert [o["Key"] for o in listed.get("Contents", [])] == [key], listed.get("Contents")

    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0, "not deleted"

    try:
        client(secret="not-the-secret").list_objects_v2(Bucket=bucket, Prefix=prefix)
        raise AssertionError("a request signed with a wrong secret was accepted")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        assert code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"), code

    ms = (time.monotonic() - t0) * 1000
    print(
        f"S3 check passed: multipart 12 MiB in 3 parts (ETag {done['ETag']}), "
        f"Range bytes={lo}-{hi} -> 206, whole GET sha256 ok, list ok, delete ok, "
        f"wrong secret refused ({code}); {ms:.0f} ms"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wait", type=float, metavar="SECONDS", help="wait until S3 takes writes")
    ap.add_argument("--check", action="store_true", help="run the multipart/Range smoke check")
    args = ap.parse_args()
    bucket = os.environ.get("MAAS_TEST_S3_BUCKET", "maas-test")
    s3 = client()
    if args.wait is not None:
        wait_ready(s3, bucket, args.wait)
    if args.check:
        check(s3, bucket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
