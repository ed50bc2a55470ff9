-- The Compose stack's Postgres holds two metadata databases. The postgres image runs this file once, on an empty
-- data volume (docker-entrypoint-initdb.d); POSTGRES_USER owns both.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
