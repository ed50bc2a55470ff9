from __future__ import annotations

import os
import sys

# Spark workers must use this interpreter, and bind loopback only.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
