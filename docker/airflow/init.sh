#!/bin/sh
# One-shot Airflow init under Compose (the airflow-init service). Idempotent.
# 1. Settings() refuses the change-me secrets in docker mode, so a half-configured .env stops here.
# 2. The simple auth manager reads its admin password from this file; it would invent one if the file were missing.
# 3. Migrate the metadata database (Postgres).
set -eu
python - <<'PY'
import json
import os
from pathlib import Path

from streamml.config import Settings

airflow = Settings().airflow
path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.write_text(json.dumps({airflow.admin_user: airflow.admin_password.get_secret_value()}))
path.chmod(0o600)
PY
exec airflow db migrate
