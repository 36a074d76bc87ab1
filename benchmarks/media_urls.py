"""What signed media URLs cost: signing one URL (local HMAC, S3 presign) and checking + serving
one image through Django's signed view (in-process, no network).

An API page of 500 frames signs 500 URLs, so the per-URL cost decides whether signing shows in
API latency.

    python benchmarks/media_urls.py            # 20,000 local URLs, 5,000 presigns, 2,000 serves
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def per_call_us(n: int, call: object) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=20_000)
    parser.add_argument("--presigns", type=int, default=5_000)
    parser.add_argument("--serves", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="media-bench-") as var:
        (Path(var) / "staticfiles").mkdir()
        run(args, var)


def run(args: argparse.Namespace, var: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="hilapp.settings.base",
        HILAPP_VAR_DIR=var,
        SECRET_KEY="bench-" + "k" * 50,
        DEBUG="0",
        HILAPP_HTTPS="0",
        ALLOWED_HOSTS="testserver",
    )
    import django

    django.setup()
    from django.test import Client

    from hilapp.media import media_url
    from hilapp.s3 import S3MediaStorage
    from synthesis.artifacts import save_png
    from tests.factories import png_bytes
    from tests.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3

    name, _ = save_png(png_bytes("bench", size=256), folder="frames")
    print(f"local sign:   {per_call_us(args.urls, lambda: media_url(name)):8.1f} us/URL")
    url = media_url(name)
    client = Client()
    assert client.get(url).status_code == 200
    serve = per_call_us(args.serves, lambda: b"".join(client.get(url).streaming_content))  # type: ignore[attr-defined]
    print(f"local serve:  {serve:8.1f} us/image (signature check + FileResponse, 256 px PNG)")

    server = LocalS3().start()
    try:
        bucket = server.bucket()["AWS_STORAGE_BUCKET_NAME"]
        storage = S3MediaStorage(
            bucket_name=bucket,
            endpoint_url=server.endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region_name=REGION,
            signature_version="s3v4",
            querystring_expire=3600,
        )
        storage.url(name)  # the boto3 client is built once per thread
        presign = per_call_us(args.presigns, lambda: storage.url(name))
        print(f"S3 presign:   {presign:8.1f} us/URL")
    finally:
        server.stop()
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
