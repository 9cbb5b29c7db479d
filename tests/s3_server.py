"""A real S3-compatible server on localhost for DVC's S3-remote tests: moto's standalone server.

It starts open, so the test can create an IAM user with an access key and a bucket, then
switches authentication on: from then on only that user's key is accepted, as on AWS or MinIO,
and a wrong key gets the same 403 a real endpoint gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.local_servers import free_port, wait_until_listening

REGION = "us-east-1"


class LocalS3Server:
    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self.key_id = self.secret = ""  # the team user's access key, once create_user_with_bucket made it

    def __enter__(self) -> LocalS3Server:
        self._log = self.log_file.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self._log, stderr=subprocess.STDOUT)
        wait_until_listening(self.process, self.port, "moto server", self.log_file.read_text)
        return self

    def __exit__(self, *exc) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._log.close()

    def client(self, service: str, key_id: str = "bootstrap", secret: str = "bootstrap"):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def create_user_with_bucket(self, bucket: str) -> None:
        """An IAM user allowed everything on S3, its access key (``key_id``, ``secret``), and a bucket;
        then authentication is enforced for every later request."""
        iam = self.client("iam")
        iam.create_user(UserName="dvc-team")
        key = iam.create_access_key(UserName="dvc-team")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="dvc-team", PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        self.client("s3").create_bucket(Bucket=bucket)
        # Every request from now on needs a known key and a valid signature.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["status"] == "ok"
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]

    def object_keys(self, bucket: str, prefix: str, key_id: str, secret: str) -> list[str]:
        s3 = self.client("s3", key_id, secret)
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys
