"""spark-submit entry: split a raw MovieLens snapshot by time and build point-in-time features into MinIO.

spark-submit ... spark-jobs/build_features.py --snapshot SNAPSHOT --version N [--quantile 0.8]
"""

from __future__ import annotations

import argparse
import json
import sys

from streamml import names
from streamml.config import get_settings
from streamml.features.batch import build
from streamml.logging import configure_logging
from streamml.spark_session import create_session


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", required=True, help="raw snapshot id under s3a://raw/movielens/")
    parser.add_argument("--version", required=True, type=int, help="feature version to (re)write")
    parser.add_argument(
        "--quantile", type=float, default=names.SPLIT_QUANTILE, help="time split: history before this quantile"
    )
    args = parser.parse_args()
    configure_logging()
    settings = get_settings()
    spark = create_session(settings, "streamml-build-features")
    try:
        manifest = build(spark, settings, args.snapshot, args.version, args.quantile)
    finally:
        spark.stop()
    sys.stdout.write(json.dumps(manifest["rows"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
